"""Writes a `.rwkv` file (docs/FILE_FORMAT.md) from a checked `ModelPlan`, streaming.

1. `plan_layout` decides every offset from shapes and dtypes alone: header, tensor table, metadata JSON,
   tokenizer blob, then each tensor at a multiple of 64. Nothing has been read from the weights yet.
2. `write_model` writes the header, table, metadata and tokenizer, then the tensors one at a time.
   A matrix is read, transformed and converted in chunks of rows (`CHUNK_BYTES` of float64 working
   data at most), written, and its source pages are handed back to the OS; so peak memory is a few
   chunks plus the largest vector, whatever the size of the model.
3. The file is written under a temporary name in the output's directory, fsync'ed, verified (the C
   library loads it as it would any model: header, tensor table, every tensor of the architecture with its
   shape and type), and only then renamed over the output path. On any failure (KeyboardInterrupt included) the temporary file is
   removed: the output path never holds a partial model.

Numerics. Values are widened exactly to float32 (bf16, f16) or kept in float64 (f64 sources);
transforms compute in float64. Every stored value is rounded to f32 once; an f16 matrix is that f32
value rounded again to f16 (numpy: round to nearest, ties to even), so an f16 file holds exactly
what the f32 file holds, rounded. Policy for values f16 cannot hold: a matrix with a finite value
beyond +-65504 (it would round to infinity) is refused with an error naming the tensor and its
largest magnitude, asking for `--dtype f32`; nothing is clamped silently. A stored value that is NaN
or infinite (in any tensor, whatever the dtype) is refused too: it would poison every logit.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import IO, Callable, List, Optional, Sequence

import numpy as np

from ..errors import ModelFormatError, RwkvArgumentError, RwkvIOError
from .arch import LORA, MATRIX, ModelPlan, PlannedTensor
from .quantize import (DTYPE_F16, DTYPE_F32, DTYPE_IDS, DTYPE_NAMES, DTYPE_Q4, QUANTIZED, Keep, check_keep_used,
                       choose_dtype, find_outlier_columns, max_outlier_columns, nbytes as dtype_nbytes,
                       quantize_rows, split_q4)
from .tensors import numel
from .tokenizer_blob import TokenizerBlob

MAGIC = b"RWKVCPU\0"
FORMAT_VERSION = 2  # 2: q4 with two-level scales, column scales (1: f16 q4 scales, f16 outlier columns)
HEADER_SIZE = 256
ENTRY_SIZE = 128
ALIGN = 64
NAME_CAP = 64  # bytes, NUL included
DTYPE_NP = {DTYPE_F32: np.dtype("<f4"), DTYPE_F16: np.dtype("<f2")}
CHUNK_BYTES = 8 << 20  # float64 working data per chunk of rows
F16_MAX = 65504.0

_HEADER = struct.Struct("<8s12I8Q")  # magic, 12 u32 fields, 8 u64 fields: 120 bytes, then zeros
_ENTRY = struct.Struct("<64sII4QQQQ")  # name, dtype, n_dims, shape[4], offset, nbytes, reserved

ProgressFn = Callable[[str], None]


@dataclass
class TensorSlot:
    """A planned tensor with its place in the file."""

    tensor: PlannedTensor
    dtype: int  # DTYPE_F32, DTYPE_F16, DTYPE_Q8 or DTYPE_Q4
    offset: int  # relative to data_offset
    nbytes: int
    note: str = ""  # why the dtype differs from the plain rule (--keep, a fallback), for the progress lines
    outlier_cols: Optional[np.ndarray] = None  # q8/q4 matrices: columns with a scale (quantize.py), [k]
    outlier_scales: Optional[np.ndarray] = None  # [k] f32: those columns are stored divided by these
    companion_of: Optional["TensorSlot"] = None  # "<matrix>.outlier_cols" / ".outlier_scales" slots


@dataclass
class Layout:
    """Where everything goes in the output file."""

    plan: ModelPlan
    tokenizer: TokenizerBlob
    metadata: bytes
    slots: List[TensorSlot]
    metadata_offset: int
    tokenizer_offset: int
    data_offset: int
    data_size: int

    @property
    def file_size(self) -> int:
        return self.data_offset + self.data_size


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# Where a matrix's data starts within its memory page changes how fast the decode kernels stream it: on the
# development VM (Sapphire Rapids, docs/PERFORMANCE.md "Other versions", fifth session) byte-identical q4 files
# decoded 10-11% slower with every matrix at 192 (mod 512) than at 64, and 4-6% slower at 0, for v5.2 and v7
# alike (64 was measured at 64, 576, 1088 and 3136 mod 4096). The data region starts on a multiple of
# MATRIX_PHASE_MOD and each matrix (LoRA matrices too) at MATRIX_PHASE (mod MATRIX_PHASE_MOD), at most 448 bytes of
# padding each.
MATRIX_PHASE_MOD = 512
MATRIX_PHASE = 64


def _matrix_start(offset: int) -> int:
    """The first offset >= `offset` (a multiple of ALIGN) at MATRIX_PHASE mod MATRIX_PHASE_MOD."""
    return offset + (MATRIX_PHASE - offset) % MATRIX_PHASE_MOD


def _check_name(name: str) -> bytes:
    raw = name.encode("ascii", "replace")
    if not raw or len(raw) >= NAME_CAP or any(c < 0x21 or c > 0x7E for c in raw):
        raise ModelFormatError(f"tensor name {name!r} is not 1..{NAME_CAP - 1} printable ASCII characters")
    return raw


def plan_layout(plan: ModelPlan, dtype: str, tokenizer: TokenizerBlob, metadata: dict,
                keep: Sequence[Keep] = ()) -> Layout:
    """Place every region and tensor. `dtype` (f32, f16, q8, q4) is the matrices' type; `keep` overrides it
    per tensor (quantize.choose_dtype has the rules)."""
    if dtype not in DTYPE_IDS:
        raise RwkvArgumentError(f"dtype must be one of {', '.join(DTYPE_IDS)}, not {dtype!r}")
    check_keep_used(keep, [t.name for t in plan.tensors])
    slots: List[TensorSlot] = []
    offset = 0
    for t in plan.tensors:
        _check_name(t.name)
        if not 1 <= len(t.shape) <= 4:
            raise ModelFormatError(f"tensor {t.name}: {len(t.shape)} dimensions cannot be stored (1..4)")
        tdtype, note = choose_dtype(t.name, tuple(t.shape), t.kind == MATRIX, getattr(t, "quantizable", True),
                                    DTYPE_IDS[dtype], keep)
        nbytes = dtype_nbytes(tdtype, t.shape)
        if t.kind in (MATRIX, LORA):  # what the matrix kernels stream
            offset = _matrix_start(offset)
        slot = TensorSlot(t, tdtype, offset, nbytes, note)
        slots.append(slot)
        offset = _align(offset + nbytes)
        if tdtype in QUANTIZED:
            cols, scales = find_outlier_columns(_column_absmax(t), max_outlier_columns(tdtype, *t.shape))
            if cols.size:
                slot.outlier_cols, slot.outlier_scales = cols, scales
                slot.note = (slot.note + ", " if slot.note else "") + f"{cols.size} column(s) scaled"
                k = int(cols.size)
                for suffix, cdtype, shape in ((".outlier_cols", DTYPE_F32, (k,)),
                                              (".outlier_scales", DTYPE_F32, (k,))):
                    comp = PlannedTensor(t.name + suffix, shape, MATRIX, None, None, [])
                    _check_name(comp.name)
                    size = dtype_nbytes(cdtype, shape)
                    slots.append(TensorSlot(comp, cdtype, offset, size, companion_of=slot))
                    offset = _align(offset + size)
    data_size = slots[-1].offset + slots[-1].nbytes if slots else 0
    meta = json.dumps(metadata, ensure_ascii=False, sort_keys=True).encode("utf-8")
    metadata_offset = HEADER_SIZE + len(slots) * ENTRY_SIZE
    tokenizer_offset = metadata_offset + len(meta)
    data_offset = -(-(tokenizer_offset + len(tokenizer.data)) // MATRIX_PHASE_MOD) * MATRIX_PHASE_MOD
    return Layout(plan, tokenizer, meta, slots, metadata_offset, tokenizer_offset, data_offset, data_size)


def encode_header(layout: Layout) -> bytes:
    """The 256-byte header."""
    d = layout.plan.dims
    head = _HEADER.pack(
        MAGIC, FORMAT_VERSION, HEADER_SIZE, layout.plan.arch_id, d.n_layer, d.n_embd, d.dim_att, d.n_head,
        d.head_size, d.n_ffn, d.n_vocab, len(layout.slots), layout.tokenizer.kind,
        HEADER_SIZE, layout.tokenizer_offset, len(layout.tokenizer.data), layout.metadata_offset,
        len(layout.metadata), layout.data_offset, layout.data_size, layout.file_size)
    return head + bytes(HEADER_SIZE - len(head))


def encode_table(layout: Layout) -> bytes:
    """The tensor table: one 128-byte entry per tensor."""
    entries = []
    for s in layout.slots:
        shape = list(s.tensor.shape) + [0] * (4 - len(s.tensor.shape))
        entries.append(_ENTRY.pack(_check_name(s.tensor.name), s.dtype, len(s.tensor.shape), *shape,
                                   s.offset, s.nbytes, 0))
    return b"".join(entries)


# ---- tensor data -------------------------------------------------------------------------------------
def _check_finite(values: np.ndarray, name: str) -> None:
    if not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise ModelFormatError(f"tensor {name} holds {bad} NaN or infinite value(s)")


def _to_stored(values: np.ndarray, dtype: int, name: str):
    """float32/float64 values -> the stored bytes: rounded to f32 once, then to f16 or quantized if asked
    (q8/q4 rows are quantized from those f32 values)."""
    f32 = np.ascontiguousarray(values, dtype=np.float32)
    _check_finite(f32, name)
    if dtype == DTYPE_F32:
        return f32
    if dtype in QUANTIZED:
        return quantize_rows(f32.reshape(f32.shape[0], -1), dtype, name)
    with np.errstate(over="ignore"):  # overflow is detected just below, with a better message
        f16 = f32.astype(np.float16)
    if np.isinf(f16).any():
        peak = float(np.abs(f32).max())
        raise ModelFormatError(f"tensor {name} has values up to {peak:.6g}, beyond float16's range "
                               f"(+-{F16_MAX:g}): convert with --dtype f32")
    return f16


def _inputs_f64(t: PlannedTensor) -> List[np.ndarray]:
    return [np.asarray(src.rows(), dtype=np.float64) for src in t.inputs]  # type: ignore[attr-defined]


def _rows_per_chunk(shape: tuple) -> int:
    row = max(1, numel(shape[1:]))
    return max(1, CHUNK_BYTES // (row * 8))


def _matrix_chunks(t: PlannedTensor):
    """(start, stop, rows) of a matrix, transformed, in chunks of _rows_per_chunk rows; the source pages of
    each chunk are released once the caller is done with it."""
    src = t.source
    inputs = _inputs_f64(t)
    n_rows = t.shape[0]
    step = _rows_per_chunk(t.shape)
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        chunk = src.rows(start, stop)  # type: ignore[attr-defined]  # [r, C] float32 (float64 for F64)
        if t.transform:
            chunk = t.transform.fn(chunk.astype(np.float64), inputs)
        yield start, stop, chunk
        src.release(start, stop)  # type: ignore[attr-defined]


def _column_absmax(t: PlannedTensor) -> np.ndarray:
    """max |w| of each column of a matrix (a read-only pass before the layout is fixed)."""
    out = np.zeros(t.shape[1], dtype=np.float64)
    for _start, _stop, chunk in _matrix_chunks(t):
        np.maximum(out, np.abs(chunk).max(axis=0), out=out)
    return out


def _write_companion(f: IO[bytes], slot: TensorSlot) -> None:
    m = slot.companion_of
    assert m is not None and m.outlier_cols is not None and m.outlier_scales is not None
    if slot.tensor.name.endswith(".outlier_cols"):
        f.write(m.outlier_cols.astype("<f4").tobytes())
    else:
        f.write(m.outlier_scales.astype("<f4").tobytes())


def write_tensor(f: IO[bytes], slot: TensorSlot) -> None:
    """Stream one tensor: read rows, transform, round, write; release the source pages as it goes.

    Shapes: the source is [R, ...]; a chunk is [r, ...] with r = _rows_per_chunk. A vector is written
    in one piece, reshaped to its stored (squeezed) shape. A q8/q4 matrix with column scales stores those
    columns divided by their scales. A q4 matrix is three arrays (codes, D, s; docs/FILE_FORMAT.md): each
    chunk's codes are written as they come, its scales kept (1/17 of the codes) and written after the last
    chunk."""
    if slot.companion_of is not None:
        _write_companion(f, slot)
        return
    t = slot.tensor
    src = t.source
    inputs = _inputs_f64(t)
    if t.kind != MATRIX:
        values = src.rows()  # type: ignore[attr-defined]
        if t.transform:
            values = t.transform.fn(values.astype(np.float64), inputs)
        f.write(_to_stored(values.reshape(t.shape), slot.dtype, t.name))
        return
    cols = slot.outlier_cols
    scales: List[List[bytes]] = [[], []]  # q4: the chunks' D and s arrays
    for start, stop, chunk in _matrix_chunks(t):
        if cols is not None:
            chunk = np.array(chunk, dtype=np.float32)
            _check_finite(chunk, t.name)
            chunk[:, cols] /= slot.outlier_scales
        stored = _to_stored(chunk, slot.dtype, t.name)
        if slot.dtype != DTYPE_Q4:
            f.write(stored)
            continue
        codes, d, s = split_q4(stored, stop - start, t.shape[1])
        f.write(codes)
        scales[0].append(d)
        scales[1].append(s)
    for part in scales:
        f.write(b"".join(part))


def _pad(f: IO[bytes], to: int) -> None:
    pos = f.tell()
    if pos > to:
        raise AssertionError(f"writer overran its layout ({pos} > {to})")
    f.write(bytes(to - pos))


def write_contents(f: IO[bytes], layout: Layout, progress: Optional[ProgressFn]) -> None:
    """Everything, in file order, checking each region lands where the layout put it."""
    f.write(encode_header(layout))
    f.write(encode_table(layout))
    f.write(layout.metadata)
    f.write(layout.tokenizer.data)
    written = 0
    for n, slot in enumerate(layout.slots, 1):
        _pad(f, layout.data_offset + slot.offset)
        write_tensor(f, slot)
        written += slot.nbytes
        if progress:
            note = f" ({slot.note})" if slot.note else ""
            progress(f"[{n}/{len(layout.slots)}] {slot.tensor.name} {list(slot.tensor.shape)} "
                     f"{DTYPE_NAMES[slot.dtype]}{note}  {written / 1e6:.1f} MB written")
    if f.tell() != layout.file_size:
        raise AssertionError(f"wrote {f.tell()} bytes, planned {layout.file_size}")


# ---- atomic output -----------------------------------------------------------------------------------
def _umask() -> int:
    """The process umask, read without changing it (Linux), else the common 022."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_atomic(out_path: str, fill: Callable[[IO[bytes]], None],
                 verify: Optional[Callable[[str], None]] = None) -> None:
    """Create `out_path` atomically: `fill` writes a temp file beside it, which is fsync'ed, checked by
    `verify(temp_path)` (which raises if the file is bad) and renamed. If anything fails or is interrupted,
    the temp file is removed and `out_path` is left as it was. A full disk is an RwkvIOError naming it."""
    out_path = os.path.abspath(out_path)
    directory = os.path.dirname(out_path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out_path)}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise RwkvIOError(f"cannot create a file in {directory}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out_path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, RwkvIOError):
            raise RwkvIOError(f"cannot write {out_path}: {e.strerror or e}") from e
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stderr_progress() -> ProgressFn:
    """A bar redrawn in place on a terminal, else one line per tensor."""
    from ..progress import line_progress
    return line_progress("converting")


def verify_model_file(path: str) -> None:
    """Load the written file with the C library, as any program would (every structural check of
    docs/FILE_FORMAT.md and every tensor the architecture needs); raise ModelFormatError if it is refused."""
    from .._ffi import ffi, lib, last_error
    out = ffi.new("rwkv_model **")
    if lib.rwkv_model_load(os.fsencode(path), 1, out) != 0:
        raise ModelFormatError(f"the written model failed verification, so it was not kept: {last_error()}")
    lib.rwkv_model_free(out[0])


def write_model(layout: Layout, out_path: str, progress: Optional[ProgressFn] = None) -> None:
    """Write the planned model to `out_path` (atomically, after verifying it)."""
    write_atomic(out_path, lambda f: write_contents(f, layout, progress), verify_model_file)
