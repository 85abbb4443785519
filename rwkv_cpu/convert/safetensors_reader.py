"""Reads `.safetensors` files, and sharded checkpoints through their `*.index.json`, without the
safetensors package.

    [u64 little-endian n][n bytes of JSON header][data]
    header: {"__metadata__": {str: str}, name: {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...}

Offsets are relative to the start of the data. Everything in the header is checked before a tensor is
handed out: the header size (cap `MAX_HEADER_BYTES`, as the reference implementation), UTF-8, JSON with no
duplicate keys, known dtypes, shapes of non-negative ints, `e - b` equal to the size the dtype and shape
give, every range inside the file, and no two ranges overlapping. Tensors are then lazy views of a
read-only mmap of the file.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ModelFormatError, RwkvIOError
from .tensors import DTYPES, Checkpoint, LazyTensor, map_file, numel

MAX_HEADER_BYTES = 100 << 20
MAX_INDEX_BYTES = 64 << 20
MAX_DIMS = 8

Entry = Tuple[str, Tuple[int, ...], int, int]  # dtype, shape, begin, end (relative to the data start)


def looks_like_safetensors(head: bytes) -> bool:
    """A plausible safetensors start: a header length, then a JSON object."""
    return len(head) >= 9 and head[8:9] == b"{"


def open_safetensors(path: str, source_format: str = "safetensors") -> Checkpoint:
    """Open one .safetensors file: its tensors as lazy views of the file."""
    mm, size = map_file(path)
    ckpt = Checkpoint(path, source_format, {}, [mm.close])
    try:
        entries, data_start = parse_header(mm, size, path)
        for name, (dtype, shape, begin, _end) in entries.items():
            ckpt.tensors[name] = LazyTensor(name, dtype, shape, mm, data_start + begin)
        return ckpt
    except BaseException:
        ckpt.close()
        raise


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ModelFormatError(f"key {k!r} appears twice")
        out[k] = v
    return out


def _load_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ModelFormatError as e:
        raise ModelFormatError(f"{what}: {e}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelFormatError(f"{what} is not valid UTF-8 JSON: {str(e)[:200]}") from None


def parse_header(buf: Any, size: int, path: str) -> Tuple[Dict[str, Entry], int]:
    """Validate a safetensors header. Returns ({name: (dtype, shape, begin, end)}, data start)."""
    if size < 8:
        raise ModelFormatError(f"{path}: {size} bytes, too short for a safetensors header (truncated?)")
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > MAX_HEADER_BYTES:
        raise ModelFormatError(f"{path}: safetensors header of {n} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > size:
        raise ModelFormatError(f"{path}: safetensors header of {n} bytes runs past the end of the file "
                               f"({size} bytes; truncated?)")
    header = _load_json(bytes(buf[8:8 + n]), f"{path}: safetensors header")
    if not isinstance(header, dict):
        raise ModelFormatError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        raise ModelFormatError(f"{path}: safetensors __metadata__ must map strings to strings")
    data_len = size - 8 - n
    entries = {name: _entry(name, e, data_len, path) for name, e in header.items()}
    _check_no_overlap(entries, path)
    return entries, 8 + n


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _entry(name: str, e: Any, data_len: int, path: str) -> Entry:
    where = f"{path}: tensor {name}"
    if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
        raise ModelFormatError(f"{where}: entry must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
    if dtype not in DTYPES:
        raise ModelFormatError(f"{where}: unsupported dtype {str(dtype)[:20]!r} (known: {', '.join(DTYPES)})")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_is_int(d) and d >= 0 for d in shape)):
        raise ModelFormatError(f"{where}: shape must be a list of at most {MAX_DIMS} non-negative ints")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise ModelFormatError(f"{where}: data_offsets must be two ints")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise ModelFormatError(f"{where}: data_offsets [{begin}, {end}] lie outside the data "
                               f"({data_len} bytes; truncated?)")
    want = numel(tuple(shape)) * DTYPES[dtype].itemsize
    if end - begin != want:
        raise ModelFormatError(f"{where}: {end - begin} bytes for a {dtype} tensor of shape {shape}, which "
                               f"needs {want}")
    return dtype, tuple(shape), begin, end


def _check_no_overlap(entries: Dict[str, Entry], path: str) -> None:
    spans = sorted((b, e, name) for name, (_d, _s, b, e) in entries.items() if e > b)
    for (b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ModelFormatError(f"{path}: tensors {n0} [{b0}, {e0}) and {n1} [{b1}, ...) overlap")


# ---- shards ------------------------------------------------------------------------------------------
def _shard_path(directory: str, name: Any, index_path: str) -> str:
    """A shard named in an index: a plain file name in the index's directory, nothing else."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name):
        raise ModelFormatError(f"{index_path}: shard name {str(name)[:80]!r} is not a plain file name")
    return os.path.join(directory, name)


def read_index(index_path: str) -> Dict[str, str]:
    """`{"weight_map": {tensor: shard file}}` -> {tensor: shard path}."""
    try:
        with open(index_path, "rb") as f:
            raw = f.read(MAX_INDEX_BYTES + 1)
    except OSError as e:
        raise RwkvIOError(f"cannot read {index_path}: {e.strerror or e}") from e
    if len(raw) > MAX_INDEX_BYTES:
        raise ModelFormatError(f"{index_path} exceeds {MAX_INDEX_BYTES} bytes")
    index = _load_json(raw, index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelFormatError(f"{index_path} has no weight_map object")
    directory = os.path.dirname(os.path.abspath(index_path))
    return {name: _shard_path(directory, shard, index_path) for name, shard in weight_map.items()}


def open_sharded(index_path: str, source_format: str, open_shard: Any) -> Checkpoint:
    """Open every shard an index names (with `open_shard(path)`) as one checkpoint. Each tensor must be
    in the shard the index names, and each shard tensor must be in the index."""
    weight_map = read_index(index_path)
    merged = Checkpoint(index_path, source_format, {})
    try:
        for shard_path in sorted(set(weight_map.values())):
            shard: Optional[Checkpoint] = open_shard(shard_path)
            merged._closers.extend(shard._closers)
            for name, tensor in shard.tensors.items():
                if weight_map.get(name) != shard_path:
                    raise ModelFormatError(f"tensor {name} is in shard {os.path.basename(shard_path)} but the "
                                           f"index {'names another shard' if name in weight_map else 'lacks it'}")
                merged.tensors[name] = tensor
        missing = [n for n in weight_map if n not in merged.tensors]
        if missing:
            raise ModelFormatError(f"{index_path} lists tensor {missing[0]}, which is in none of the shards")
        return merged
    except BaseException:
        merged.close()
        raise
