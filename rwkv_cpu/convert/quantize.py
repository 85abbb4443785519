"""Which stored type each tensor gets, and turning rows of floats into those types.

    --quant q4                    every large matrix q4 (emb.weight and head.weight included)
    --keep f16:head               ...except head.weight, kept in f16
    --keep q8:blocks.*.att.*      patterns are globs over tensor names (a name without ".weight" also
                                  matches its ".weight"); the first matching --keep wins

Types (docs/FILE_FORMAT.md, csrc/kernels/quant.h):

    f32   IEEE binary32                              32 bits per weight
    f16   IEEE binary16                              16
    q8    blocks of 32 int8 + an f16 scale            8.5
    q4    blocks of 32 4-bit codebook indices + an    4.5   scale chosen per block to minimise its error
          f16 scale

Rules: vectors (norms, mixes, decays) are always f32; matrices the architecture table marks as not
quantizable (the small LoRA matrices of v6/v7) stay f32; a matrix whose input dimension is not a multiple
of 32 cannot be cut into q8/q4 blocks and falls back to f16 (it is named in the progress output). The
quantizer itself is the C library's (`rwkv_quantize`), so the converter and the kernels share one
definition of every layout.
"""
from __future__ import annotations

import fnmatch
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ModelFormatError, RwkvArgumentError

DTYPE_F32, DTYPE_F16, DTYPE_Q8, DTYPE_Q4 = 0, 1, 8, 9
DTYPE_IDS = {"f32": DTYPE_F32, "f16": DTYPE_F16, "q8": DTYPE_Q8, "q4": DTYPE_Q4}
DTYPE_NAMES = {v: k for k, v in DTYPE_IDS.items()}
QUANT_TYPES = tuple(DTYPE_IDS)  # accepted by --quant and --keep
QUANTIZED = (DTYPE_Q8, DTYPE_Q4)
BLOCK = 32  # weights per q8/q4 block, along the input dimension
BLOCK_BYTES = {DTYPE_Q8: 34, DTYPE_Q4: 18}


def row_bytes(dtype: int, n_cols: int) -> int:
    """Bytes of one stored row of n_cols weights."""
    if dtype == DTYPE_F32:
        return 4 * n_cols
    if dtype == DTYPE_F16:
        return 2 * n_cols
    if n_cols % BLOCK:
        raise ValueError(f"{DTYPE_NAMES[dtype]} rows need a multiple of {BLOCK} values, not {n_cols}")
    return n_cols // BLOCK * BLOCK_BYTES[dtype]


def nbytes(dtype: int, shape: Sequence[int]) -> int:
    """Bytes of a whole tensor."""
    if dtype in QUANTIZED:
        if len(shape) != 2:
            raise ValueError("quantized tensors are 2-D")
        return shape[0] * row_bytes(dtype, shape[1])
    n = 1
    for d in shape:
        n *= d
    return n * (4 if dtype == DTYPE_F32 else 2)


# ---- choosing each tensor's type ------------------------------------------------------------------------
@dataclass(frozen=True)
class Keep:
    """One --keep DTYPE:PATTERN override."""

    dtype: int
    pattern: str

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in (self.pattern, self.pattern + ".weight"))


def parse_quant(quant: str) -> int:
    if quant not in DTYPE_IDS:
        raise RwkvArgumentError(f"quant must be one of {', '.join(QUANT_TYPES)}, not {quant!r}")
    return DTYPE_IDS[quant]


def parse_keep(specs: Optional[Sequence[str]]) -> List[Keep]:
    """["f16:head", "q8:blocks.*.ffn.*"] -> [Keep, ...]; a malformed item names itself."""
    out: List[Keep] = []
    for spec in specs or ():
        dtype, sep, pattern = spec.partition(":")
        if not sep or not pattern or dtype not in DTYPE_IDS:
            raise RwkvArgumentError(f"--keep {spec!r}: expected DTYPE:PATTERN with DTYPE one of "
                                    f"{', '.join(QUANT_TYPES)}, e.g. f16:head")
        out.append(Keep(DTYPE_IDS[dtype], pattern))
    return out


def choose_dtype(name: str, shape: Tuple[int, ...], is_matrix: bool, quantizable: bool, quant: int,
                 keep: Sequence[Keep]) -> Tuple[int, str]:
    """(stored dtype, reason) of one tensor. The reason is "" for the plain rule, else a few words."""
    if not is_matrix:
        return DTYPE_F32, ""
    if not quantizable:
        return DTYPE_F32, "not quantizable"
    want, why = quant, ""
    for k in keep:
        if k.matches(name):
            want, why = k.dtype, f"--keep {DTYPE_NAMES[k.dtype]}:{k.pattern}"
            break
    if want in QUANTIZED and (len(shape) != 2 or shape[1] % BLOCK):
        return DTYPE_F16, f"input dimension {shape[-1]} is not a multiple of {BLOCK}: f16"
    return want, why


def check_keep_used(keep: Sequence[Keep], names: Sequence[str]) -> None:
    """A --keep pattern that matches nothing is most likely a typo: refuse it rather than ignore it."""
    for k in keep:
        if not any(k.matches(n) for n in names):
            raise RwkvArgumentError(f"--keep {DTYPE_NAMES[k.dtype]}:{k.pattern} matches no tensor of this model")


# ---- quantizing rows --------------------------------------------------------------------------------------
_POOL: Optional[ThreadPoolExecutor] = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        import os
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="rwkv-quant")
    return _POOL


def _quantize_part(dtype: int, rows: np.ndarray, name: str) -> bytes:
    from .._ffi import ffi, lib, last_error
    n_rows, n_cols = rows.shape
    out = bytearray(n_rows * row_bytes(dtype, n_cols))
    src = ffi.from_buffer("float[]", rows)
    st = lib.rwkv_quantize(dtype, src, n_rows, n_cols, ffi.from_buffer(out), len(out))
    if st != 0:
        raise ModelFormatError(f"tensor {name}: {last_error()}")
    return bytes(out)


def quantize_rows(rows: np.ndarray, dtype: int, name: str) -> bytes:
    """Float rows [r, C] -> the stored bytes of dtype q8/q4 (the C library's quantizer; the rows are split
    over a few threads, as the C call releases the GIL)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n = rows.shape[0]
    workers = _pool()._max_workers  # type: ignore[attr-defined]
    if n < 2 * workers or rows.size < (1 << 16):
        return _quantize_part(dtype, rows, name)
    step = (n + workers - 1) // workers
    parts = [rows[i:i + step] for i in range(0, n, step)]
    return b"".join(_pool().map(lambda p: _quantize_part(dtype, p, name), parts))


def dequantize_rows(data: bytes, dtype: int, n_rows: int, n_cols: int) -> np.ndarray:
    """Stored bytes -> the float values they stand for, [n_rows, n_cols] (tests, tools)."""
    from .._ffi import ffi, lib, check
    out = np.empty((n_rows, n_cols), dtype=np.float32)
    check(lib.rwkv_dequantize(dtype, ffi.from_buffer(data), n_rows, n_cols, ffi.from_buffer("float[]", out)))
    return out


# ---- outlier columns ---------------------------------------------------------------------------------------
# A q8/q4 block has one scale for 32 weights: a column whose weights are many times larger than the rest
# (trained LLMs have a few) sets the scale of every block it touches and wipes out its 31 neighbours. The
# converter finds such columns (largest |w| over the column > OUTLIER_RATIO x the median column's) and
# stores them apart, exactly in f16: "<name>.outlier_cols" [k] and "<name>.outlier_vals" [rows, k]; the
# blocks hold zeros there. At most max(1, in // OUTLIER_SHARE) columns per matrix (the largest first), so
# they add at most 16 / OUTLIER_SHARE = 0.25 bits per weight to a matrix that has them, and nothing to one
# that has none (the usual case: the test models without injected outliers have none).
OUTLIER_RATIO = 6.0
OUTLIER_SHARE = 64


def find_outlier_columns(col_absmax: np.ndarray) -> np.ndarray:
    """Indices (increasing) of the outlier columns, from each column's largest |w|."""
    med = float(np.median(col_absmax))
    if not med > 0:
        return np.zeros(0, dtype=np.int64)
    cap = max(1, col_absmax.size // OUTLIER_SHARE)
    cand = np.flatnonzero(col_absmax > OUTLIER_RATIO * med)
    if cand.size > cap:
        cand = cand[np.argsort(-col_absmax[cand], kind="stable")[:cap]]
    return np.sort(cand)
