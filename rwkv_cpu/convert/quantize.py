"""Which stored type each tensor gets, and turning rows of floats into those types.

    --quant q4                    every large matrix q4 (emb.weight and head.weight included)
    --keep f16:head               ...except head.weight, kept in f16
    --keep q8:blocks.*.att.*      patterns are globs over tensor names (a name without ".weight" also
                                  matches its ".weight"); the first matching --keep wins

Types (docs/FILE_FORMAT.md, csrc/kernels/quant.h):

    f32   IEEE binary32                              32 bits per weight
    f16   IEEE binary16                              16
    q8    blocks of 32 int8 + an f16 scale            8.5
    q4    blocks of 32 4-bit codebook indices, an     4.25 + 1 / (2 * blocks per super-block):
          int8 scale per block and an f16 scale per   4.3125 for rows of 256k weights, 4.5 at most
          super-block of 8 blocks                     (scales chosen to minimise each block's error)

Rules: vectors (norms, mixes, decays) are always f32; matrices the architecture table marks as not
quantizable (the small LoRA matrices of v6/v7) stay f32; a matrix whose input dimension is not a multiple
of 32 (q4: or is 32) cannot be cut into q8/q4 blocks and falls back to f16 (it is named in the progress
output). The
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
Q4_SUPER = 8  # q4 blocks per super-block (one f16 scale each)
Q4_MIN_COLS = 64  # q4 rows hold at least two blocks (one alone would cost 4.75 bits per weight)
Q4_MAX_BITS = 4.5  # q4 bits per weight, scales and column scales included, at most


def fits(dtype: int, n_cols: int) -> bool:
    """Whether rows of n_cols weights can be stored in dtype."""
    if dtype in (DTYPE_F32, DTYPE_F16):
        return n_cols > 0
    return n_cols % BLOCK == 0 and n_cols >= (Q4_MIN_COLS if dtype == DTYPE_Q4 else BLOCK)


def row_bytes(dtype: int, n_cols: int) -> int:
    """Bytes per stored row of n_cols weights (a matrix of n rows takes exactly n times this; q4 spreads its
    rows over three arrays, see q4_regions)."""
    if dtype == DTYPE_F32:
        return 4 * n_cols
    if dtype == DTYPE_F16:
        return 2 * n_cols
    if not fits(dtype, n_cols):
        least = " (at least 64)" if dtype == DTYPE_Q4 else ""
        raise ValueError(f"{DTYPE_NAMES[dtype]} rows need a multiple of {BLOCK} values{least}, not {n_cols}")
    nb = n_cols // BLOCK
    if dtype == DTYPE_Q8:
        return nb * 34
    return nb * 17 + 2 * -(-nb // Q4_SUPER)


def q4_regions(n_rows: int, n_cols: int) -> Tuple[int, int, int]:
    """Bytes of a q4 tensor's three arrays, in file order: codes [rows, nb * 16], D [rows, nsb] f16,
    s [rows, nb] int8 (docs/FILE_FORMAT.md)."""
    nb = n_cols // BLOCK
    return n_rows * nb * 16, n_rows * 2 * -(-nb // Q4_SUPER), n_rows * nb


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
    if want == DTYPE_Q4 and not fits(want, shape[1]):
        return DTYPE_F16, f"input dimension {shape[1]} is below q4's {Q4_MIN_COLS}: f16"
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


def split_q4(data: bytes, n_rows: int, n_cols: int) -> Tuple[bytes, bytes, bytes]:
    """A q4 tensor's bytes -> its three arrays (codes, D, s)."""
    a, b, _c = q4_regions(n_rows, n_cols)
    return data[:a], data[a:a + b], data[a + b:]


def quantize_rows(rows: np.ndarray, dtype: int, name: str) -> bytes:
    """Float rows [r, C] -> the stored bytes of a dtype q8/q4 tensor of those r rows (the C library's
    quantizer; the rows are split over a few threads, as the C call releases the GIL)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n = rows.shape[0]
    workers = _pool()._max_workers  # type: ignore[attr-defined]
    if n < 2 * workers or rows.size < (1 << 16):
        return _quantize_part(dtype, rows, name)
    step = (n + workers - 1) // workers
    bounds = [(i, min(n, i + step)) for i in range(0, n, step)]
    parts = list(_pool().map(lambda p: _quantize_part(dtype, rows[p[0]:p[1]], name), bounds))
    if dtype != DTYPE_Q4:
        return b"".join(parts)
    split = [split_q4(part, stop - start, rows.shape[1]) for part, (start, stop) in zip(parts, bounds)]
    return b"".join(b"".join(s[k] for s in split) for k in range(3))  # each array, part after part


def dequantize_rows(data: bytes, dtype: int, n_rows: int, n_cols: int) -> np.ndarray:
    """Stored bytes -> the float values they stand for, [n_rows, n_cols] (tests, tools)."""
    from .._ffi import ffi, lib, check
    out = np.empty((n_rows, n_cols), dtype=np.float32)
    check(lib.rwkv_dequantize(dtype, ffi.from_buffer(data), n_rows, n_cols, ffi.from_buffer("float[]", out)))
    return out


# ---- column scales -----------------------------------------------------------------------------------------
# A q8/q4 block has one scale for 32 weights: a column whose weights are many times larger than the rest
# (trained LLMs have a few) sets the scale of every block it touches and wipes out its 31 neighbours. The
# converter finds such columns (largest |w| over the column > OUTLIER_RATIO x the median column's) and
# stores them divided by a factor c = (the column's largest |w|) / (the median column's), so they look like
# the others; the product multiplies the activation's element by c instead, before quantizing it:
# W x = (W / c)(c x). Two f32 [k] companions, "<name>.outlier_cols" and "<name>.outlier_scales", 64 bits per
# column for the whole matrix. At most in // OUTLIER_SHARE columns, and for q4 no more than keep the matrix
# within Q4_MAX_BITS (max_outlier_columns); most matrices have none (the test models without injected
# outliers have none).
OUTLIER_RATIO = 6.0
OUTLIER_SHARE = 8
OUTLIER_BITS = 64  # per column: its index and its scale, f32 each


def max_outlier_columns(dtype: int, n_rows: int, n_cols: int) -> int:
    """How many column scales a matrix may have: q4 stays within Q4_MAX_BITS bits per weight, everything
    counted (its blocks, scales and both companions)."""
    cap = max(1, n_cols // OUTLIER_SHARE)
    if dtype == DTYPE_Q4:
        spare = int(Q4_MAX_BITS * n_rows * n_cols) - 8 * n_rows * row_bytes(DTYPE_Q4, n_cols)
        cap = min(cap, max(0, spare) // OUTLIER_BITS)
    return cap


def bits_per_weight(dtype: int, n_rows: int, n_cols: int, n_outliers: int = 0) -> float:
    """Bits per weight of a stored matrix and its column scales."""
    return (8 * n_rows * row_bytes(dtype, n_cols) + OUTLIER_BITS * n_outliers) / (n_rows * n_cols)


def find_outlier_columns(col_absmax: np.ndarray, cap: int) -> Tuple[np.ndarray, np.ndarray]:
    """(indices (increasing), scales) of the outlier columns, from each column's largest |w|: at most cap."""
    med = float(np.median(col_absmax))
    none = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if not med > 0 or cap <= 0:
        return none
    cand = np.flatnonzero(col_absmax > OUTLIER_RATIO * med)
    if cand.size > cap:
        cand = cand[np.argsort(-col_absmax[cand], kind="stable")[:cap]]
    cand = np.sort(cand)
    return cand, (col_absmax[cand] / med).astype(np.float32)
