"""Lazy tensors: what every checkpoint reader returns, and the dtype table the readers share.

A `LazyTensor` knows a tensor's name, dtype and shape and where its bytes lie in a memory-mapped file.
Nothing is read until the writer asks for rows, and then only the pages of those rows are touched;
`release()` hands the pages back so that converting a 15 GB checkpoint does not leave 15 GB of mapped
pages counted against the process.

dtypes are named as safetensors names them (`F32`, `BF16`, ...) whatever the container: the torch zip
reader maps torch's storage classes onto the same names.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ModelFormatError, RwkvIOError

# name -> numpy dtype of the stored bytes (little-endian). BF16 has no numpy type: it is read as its raw
# 16-bit pattern and widened with `bf16_to_f32`.
DTYPES: Dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")

Shape = Tuple[int, ...]


def numel(shape: Shape) -> int:
    """Number of elements of a shape (1 for a scalar)."""
    n = 1
    for d in shape:
        n *= d
    return n


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bit patterns (uint16) to float32, exactly: bf16 is the top half of an f32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def to_float(raw: np.ndarray, dtype: str, name: str) -> np.ndarray:
    """Stored values -> float32 (or float64 for F64 sources), exactly. Integer tensors are refused."""
    if dtype == "BF16":
        return bf16_to_f32(raw)
    if dtype == "F16":
        return raw.astype(np.float32)
    if dtype in ("F32", "F64"):
        return np.array(raw)  # a private copy: nothing handed out keeps the file mapped
    raise ModelFormatError(f"tensor {name} has dtype {dtype}; weights must be floating point "
                           f"({', '.join(FLOAT_DTYPES)})")


class LazyTensor:
    """One tensor of a checkpoint, not yet read: dtype, shape and the location of its bytes."""

    __slots__ = ("name", "dtype", "shape", "_buf", "_offset")

    def __init__(self, name: str, dtype: str, shape: Shape, buf: Any, offset: int) -> None:
        """`buf` is a read-only file mapping (or, for an inflated zip entry, bytes); `offset` in bytes."""
        if dtype not in DTYPES:
            raise ModelFormatError(f"tensor {name}: unknown dtype {dtype}")
        self.name = name
        self.dtype = dtype
        self.shape: Shape = tuple(int(d) for d in shape)
        self._buf = buf
        self._offset = offset
        if offset < 0 or offset + self.nbytes > len(buf):
            raise ModelFormatError(f"tensor {name}: bytes {offset}..{offset + self.nbytes} lie outside the "
                                   f"file ({len(buf)} bytes)")

    @property
    def numel(self) -> int:
        return numel(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPES[self.dtype].itemsize

    def raw(self) -> np.ndarray:
        """The stored values as a read-only view of the mapping, shaped `self.shape` (BF16 as uint16)."""
        arr = np.frombuffer(self._buf, dtype=DTYPES[self.dtype], count=self.numel, offset=self._offset)
        return arr.reshape(self.shape)

    def rows(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Rows [start, stop) along the first axis, widened to float32 (float64 for F64): a copy."""
        view = self.raw()
        if view.ndim == 0:
            view = view.reshape(1)
        return to_float(view[start:stop], self.dtype, self.name)

    def release(self, start: int = 0, stop: Optional[int] = None) -> None:
        """Drop the pages of rows [start, stop) from the process (they stay in the page cache)."""
        n_rows = self.shape[0] if self.shape else 1
        stop = n_rows if stop is None else min(stop, n_rows)
        row_bytes = self.nbytes // n_rows if n_rows else 0
        release_pages(self._buf, self._offset + start * row_bytes, (stop - start) * row_bytes)

    def __repr__(self) -> str:
        return f"LazyTensor({self.name!r}, {self.dtype}, {list(self.shape)})"


class TransposedTensor:
    """A 2-D tensor read transposed (Hugging Face v7 LoRA weights are stored as the transpose of BlinkDL's)."""

    __slots__ = ("name", "inner")

    def __init__(self, name: str, inner: LazyTensor) -> None:
        if len(inner.shape) != 2:
            raise ModelFormatError(f"tensor {inner.name}: expected a matrix, found shape {list(inner.shape)}")
        self.name = name
        self.inner = inner

    @property
    def dtype(self) -> str:
        return self.inner.dtype

    @property
    def shape(self) -> Shape:
        return (self.inner.shape[1], self.inner.shape[0])

    @property
    def numel(self) -> int:
        return self.inner.numel

    def raw(self) -> np.ndarray:
        return self.inner.raw().T

    def rows(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        # rows of the transpose = columns of the stored matrix: [stop-start, in_rows]
        return np.ascontiguousarray(to_float(self.inner.raw()[:, start:stop], self.dtype, self.name).T)

    def release(self, start: int = 0, stop: Optional[int] = None) -> None:
        if stop is None or stop >= self.shape[0]:  # rows of the transpose are spread over the whole matrix
            self.inner.release()


def release_pages(buf: Any, offset: int, nbytes: int) -> None:
    """madvise(MADV_DONTNEED) the pages covering [offset, offset+nbytes) of a read-only file mapping.

    On a shared read-only mapping of a file this only unmaps the pages from this process: the data stays
    in the file and the page cache, and a later access faults it back in. Rounding the range outwards to
    whole pages is therefore harmless.
    """
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None or nbytes <= 0 or not hasattr(buf, "madvise"):
        return
    page = mmap.PAGESIZE
    start = offset - offset % page
    end = min(len(buf), offset + nbytes)
    try:
        buf.madvise(advice, start, end - start)
    except (OSError, ValueError):
        pass


@dataclass
class Checkpoint:
    """A checkpoint opened for conversion: name -> lazy tensor, plus what must be closed afterwards.

    `tensors` uses the checkpoint's own names until `hf.to_blinkdl_names` maps them; `source_format`
    is one of `pth`, `hf-safetensors`, `hf-bin`, `safetensors` (docs/FILE_FORMAT.md, metadata).
    """

    path: str
    source_format: str
    tensors: Dict[str, object]
    _closers: List[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            try:
                close()
            except BufferError:
                pass  # a caller still holds a view of the mapping: the mapping goes when the view does

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def map_file(path: str) -> Tuple[mmap.mmap, int]:
    """Map a whole file read-only. Returns (mapping, size). An empty file cannot be mapped: callers check."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size == 0:
                raise ModelFormatError(f"{path} is empty")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), size
    except OSError as e:
        raise RwkvIOError(f"cannot read {path}: {e.strerror or e}") from e
