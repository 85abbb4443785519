"""Reads torch checkpoints (`.pth`, `pytorch_model.bin`): the zip archive that `torch.save` writes.

    <prefix>/data.pkl        the pickle: a dict name -> tensor, read by pickle_reader (never by pickle)
    <prefix>/data/<key>      one entry per storage, the raw little-endian elements, stored uncompressed
    <prefix>/byteorder       "little" (absent in old files, which are little-endian)
    <prefix>/version, .format_version, .storage_alignment, ...   ignored

The storage entries are stored (not deflated), so a tensor's bytes are a range of the file: they are read
in place through a read-only mmap, never copied. The zip's central directory is parsed by `zipfile`; every
entry used is then re-checked here against the file: the local header signature, method and name length,
and that the data range lies inside the file. A deflated entry (torch never writes one for a storage, but
other tools might) is inflated into memory only up to `MAX_INFLATE` bytes as *declared*, and the inflater
never produces more than declared; bzip2/lzma entries are refused (their inflaters take no output bound).
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from typing import Dict, Tuple

from ..errors import ModelFormatError, RwkvError, UnsupportedModelError
from .pickle_reader import MAX_PICKLE_BYTES, StorageRef, TensorRef, load_tensor_refs
from .tensors import DTYPES, Checkpoint, LazyTensor, map_file, numel

MAX_ENTRIES = 1 << 20
MAX_INFLATE = 64 << 20
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, crc, sizes, lens
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error, EOFError,
               NotImplementedError, UnicodeDecodeError, OverflowError, zlib.error)


def is_torch_zip(head: bytes) -> bool:
    """True if a file's first bytes start a zip archive."""
    return head[:4] == b"PK\x03\x04"


def not_a_zip_error(path: str, head: bytes) -> Exception:
    """The error explaining why a file that is not a zip cannot be read as a torch checkpoint."""
    if head[:1] == b"\x80" or head[257:262] == b"ustar":
        return UnsupportedModelError(
            f"{path}: unsupported legacy torch format (written by torch < 1.6 or with "
            "_use_new_zipfile_serialization=False, not a zip archive): load it with torch and save it again "
            "with torch.save")
    return ModelFormatError(f"{path} is neither a torch zip checkpoint nor a safetensors file")


def open_torch_zip(path: str, source_format: str = "pth") -> Checkpoint:
    """Open a torch zip checkpoint: its tensors as lazy views of the file, nothing read yet."""
    mm, size = map_file(path)
    ckpt = Checkpoint(path, source_format, {}, [mm.close])
    try:
        head = bytes(mm[:512])
        if not is_torch_zip(head):
            raise not_a_zip_error(path, head)
        try:
            with zipfile.ZipFile(path) as zf:
                infos = _entries(zf, path)
                prefix = _find_prefix(infos, path)
                _check_byteorder(zf, mm, size, infos, prefix, path)
                pkl = _read_small(zf, mm, size, infos[f"{prefix}/data.pkl"], MAX_PICKLE_BYTES, path)
                refs = load_tensor_refs(pkl)
                buffers = {key: _storage_buffer(zf, mm, size, infos, prefix, key, path)
                           for key in sorted({r.storage.key for r in refs.values()})}
        except RwkvError:
            raise
        except _ZIP_ERRORS as e:  # zipfile's own complaints about the directory, CRCs, deflate streams
            raise ModelFormatError(f"{path}: damaged or truncated zip archive: {e}") from None
        for name, ref in refs.items():
            ckpt.tensors[name] = _lazy_tensor(name, ref, buffers[ref.storage.key], path)
        return ckpt
    except BaseException:
        ckpt.close()
        raise


def _entries(zf: zipfile.ZipFile, path: str) -> Dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ModelFormatError(f"{path}: {len(infos)} zip entries, over the limit of {MAX_ENTRIES}")
    table: Dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename in table:
            raise ModelFormatError(f"{path}: zip entry {info.filename} appears twice")
        table[info.filename] = info
    return table


def _find_prefix(infos: Dict[str, zipfile.ZipInfo], path: str) -> str:
    """The archive's top folder: the `<prefix>` of its single `<prefix>/data.pkl`."""
    pickles = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        found = "none" if not pickles else ", ".join(pickles[:4])
        raise ModelFormatError(f"{path}: expected one <prefix>/data.pkl in the archive, found {found}")
    return pickles[0][: -len("/data.pkl")]


def _check_byteorder(zf: zipfile.ZipFile, mm: object, size: int, infos: Dict[str, zipfile.ZipInfo], prefix: str,
                     path: str) -> None:
    info = infos.get(f"{prefix}/byteorder")
    if info is None:
        return
    order = _read_small(zf, mm, size, info, 16, path).strip()
    if order != b"little":
        raise UnsupportedModelError(f"{path}: byte order {order[:16]!r}; only little-endian checkpoints are read")


def _read_small(zf: zipfile.ZipFile, mm: object, size: int, info: zipfile.ZipInfo, cap: int, path: str) -> bytes:
    """Read a whole (small) entry through zipfile, which inflates and checks the CRC; at most `cap` bytes.
    The entry's local header and range are checked here first, so zipfile only reads inside the file."""
    _check_method(info, path)
    _data_range(mm, size, info, path)
    if info.file_size > cap:
        raise ModelFormatError(f"{path}: zip entry {info.filename} is {info.file_size} bytes, over the "
                               f"{cap}-byte limit")
    with zf.open(info) as f:
        data = f.read(cap + 1)
    if len(data) != info.file_size:
        raise ModelFormatError(f"{path}: zip entry {info.filename} holds {len(data)} bytes, "
                               f"its directory says {info.file_size}")
    return data


def _check_method(info: zipfile.ZipInfo, path: str) -> None:
    if info.flag_bits & 0x1:
        raise ModelFormatError(f"{path}: zip entry {info.filename} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFormatError(f"{path}: zip entry {info.filename} uses compression method "
                               f"{info.compress_type}; only stored and deflated entries are read")


def _data_range(mm: object, size: int, info: zipfile.ZipInfo, path: str) -> Tuple[int, int]:
    """[start, end) of an entry's (compressed) bytes in the file, from its local header, bounds-checked."""
    off = info.header_offset
    if off < 0 or off + _LOCAL_HEADER.size > size:
        raise ModelFormatError(f"{path}: zip entry {info.filename}: local header at {off} lies outside the "
                               f"file ({size} bytes)")
    sig, _ver, flags, method, _t, _d, _crc, _cs, _us, name_len, extra_len = _LOCAL_HEADER.unpack_from(mm, off)
    if sig != b"PK\x03\x04":
        raise ModelFormatError(f"{path}: zip entry {info.filename}: no local header at offset {off}")
    name_at = off + _LOCAL_HEADER.size
    local_name = bytes(mm[name_at:name_at + name_len]).decode("utf-8" if flags & 0x800 else "cp437")
    if method != info.compress_type or local_name != info.orig_filename:
        raise ModelFormatError(f"{path}: zip entry {info.filename}: local header disagrees with the directory")
    start = name_at + name_len + extra_len
    end = start + info.compress_size
    if end > size:
        raise ModelFormatError(f"{path}: zip entry {info.filename} claims bytes {start}..{end}, past the end of "
                               f"the file ({size} bytes; truncated?)")
    return start, end


def _storage_buffer(zf: zipfile.ZipFile, mm: object, size: int, infos: Dict[str, zipfile.ZipInfo],
                    prefix: str, key: str, path: str) -> Tuple[object, int, int]:
    """(buffer, offset, nbytes) holding storage `key`: the file mapping itself for a stored entry."""
    info = infos.get(f"{prefix}/data/{key}")
    if info is None:
        raise ModelFormatError(f"{path}: storage {key} is used by a tensor but {prefix}/data/{key} is missing")
    _check_method(info, path)
    start, end = _data_range(mm, size, info, path)
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise ModelFormatError(f"{path}: stored zip entry {info.filename} has size {info.file_size} but "
                                   f"{info.compress_size} stored bytes")
        return mm, start, end - start
    data = _read_small(zf, mm, size, info, MAX_INFLATE, path)  # deflated: inflate, bounded
    return data, 0, len(data)


def _lazy_tensor(name: str, ref: TensorRef, buffer: Tuple[object, int, int], path: str) -> LazyTensor:
    """Check a tensor's view of its storage (contiguous, inside the storage and entry) and wrap it."""
    buf, base, nbytes = buffer
    storage: StorageRef = ref.storage
    item = DTYPES[storage.dtype].itemsize
    if storage.numel * item > nbytes:
        raise ModelFormatError(f"{path}: storage {storage.key} should hold {storage.numel} {storage.dtype} "
                               f"elements ({storage.numel * item} bytes) but its zip entry has {nbytes}")
    if not is_contiguous(ref.shape, ref.strides):
        raise ModelFormatError(f"{path}: tensor {name} is not contiguous (shape {list(ref.shape)}, strides "
                               f"{list(ref.strides)}); save the checkpoint with contiguous tensors")
    if ref.storage_offset + numel(ref.shape) > storage.numel:
        raise ModelFormatError(f"{path}: tensor {name} (offset {ref.storage_offset}, shape {list(ref.shape)}) "
                               f"runs past the end of storage {storage.key} ({storage.numel} elements)")
    return LazyTensor(name, storage.dtype, ref.shape, buf, base + ref.storage_offset * item)


def is_contiguous(shape: Tuple[int, ...], strides: Tuple[int, ...]) -> bool:
    """Row-major contiguity; the stride of a dimension of size 1 does not matter (torch leaves it free)."""
    expected = 1
    for dim, stride in zip(reversed(shape), reversed(strides)):
        if dim != 1 and stride != expected:
            return False
        expected *= dim
    return True

