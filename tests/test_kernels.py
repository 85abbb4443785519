"""Matrix kernels: every kernel family this CPU runs against the scalar reference, on random data of many
shapes; the scalar reference against numpy; quantize/dequantize round trips; the NaN policy; the
RWKV_CPU_KERNEL override (a subprocess per family).

Families this CPU cannot run (avx512 here, neon on x86) are tested by the C program tests/c/test_kernels.c,
under SIMDe (AVX-512) and qemu-aarch64 (NEON) in .ci/run."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from rwkv_cpu._ffi import ffi, lib, last_error
from rwkv_cpu.convert.quantize import DTYPE_IDS, dequantize_rows, quantize_rows, row_bytes

FAMILIES = ["scalar", "avx2", "avx2-vnni", "avx512", "avx512-amx", "neon", "neon-dotprod"]


def _runs(family: str) -> bool:
    w = np.zeros((1, 32), np.float32)
    y = np.zeros(1, np.float32)
    return lib.rwkv_matmul(family.encode(), 0, ffi.from_buffer(w), 1, 32, ffi.from_buffer("float[]", w), 1,
                           ffi.from_buffer("float[]", y), 1) == 0


RUNNABLE = [f for f in FAMILIES if _runs(f)]
SIMD = [f for f in RUNNABLE if f != "scalar"]


def store(w: np.ndarray, dtype: str) -> bytes:
    """Weights [rows, cols] in dtype's stored layout."""
    d = DTYPE_IDS[dtype]
    if dtype == "f32":
        return np.ascontiguousarray(w, "<f4").tobytes()
    if dtype == "f16":
        return np.ascontiguousarray(w, "<f2").tobytes()
    return quantize_rows(w, d, "W")


def matmul(family: str, dtype: str, stored: bytes, rows: int, cols: int, x: np.ndarray, threads: int = 1):
    x = np.ascontiguousarray(x, np.float32)
    T = x.shape[0]
    y = np.full((T, rows), 12345.0, np.float32)  # every output must be written
    st = lib.rwkv_matmul(family.encode(), DTYPE_IDS[dtype], ffi.from_buffer(stored), rows, cols,
                         ffi.from_buffer("float[]", x), T, ffi.from_buffer("float[]", y), threads)
    assert st == 0, last_error()
    return y


def dequant(stored: bytes, dtype: str, rows: int, cols: int) -> np.ndarray:
    if dtype == "f32":
        return np.frombuffer(stored, "<f4").reshape(rows, cols).astype(np.float64)
    if dtype == "f16":
        return np.frombuffer(stored, "<f2").reshape(rows, cols).astype(np.float64)
    return dequantize_rows(stored, DTYPE_IDS[dtype], rows, cols).astype(np.float64)


# input widths: any for f32/f16; multiples of 32 for q8/q4 (q4: at least 64), with block counts covering every
# q4 unit mix (nb % 4 = 0..3, nb < 8, nb % 8 != 0) and short last super-blocks of 1 and 2 blocks (288, 576)
COLS = {"f32": [1, 7, 8, 33, 100, 257, 1024], "f16": [1, 7, 8, 33, 100, 257, 1024],
        "q8": [32, 64, 96, 128, 160, 224, 288, 352, 1024], "q4": [64, 96, 128, 160, 224, 288, 352, 576, 1024]}
ROWS = [1, 3, 17, 64]
# accumulated float rounding of a sum of n terms, relative to sum |terms|
REL = 3e-5


def _cases(dtype):
    rng = np.random.default_rng(sum(map(ord, dtype)))
    for cols in COLS[dtype]:
        for rows in ROWS:
            T = 1 if (rows + cols) % 3 else 3
            w = rng.standard_normal((rows, cols)).astype(np.float32) * 0.05
            x = rng.standard_normal((T, cols)).astype(np.float32)
            yield rows, cols, w, x


@pytest.mark.parametrize("family", SIMD)
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8", "q4"])
@pytest.mark.parametrize("threads", [1, 2])
def test_simd_matches_scalar(family, dtype, threads):
    for rows, cols, w, x in _cases(dtype):
        stored = store(w, dtype)
        ref = matmul("scalar", dtype, stored, rows, cols, x)
        got = matmul(family, dtype, stored, rows, cols, x, threads)
        scale = np.abs(x) @ np.abs(dequant(stored, dtype, rows, cols)).T
        assert np.all(np.abs(got - ref) <= REL * scale + 1e-30), (family, dtype, rows, cols)


@pytest.mark.parametrize("dtype,act_rel", [("f32", 0), ("f16", 0), ("q8", 0.5 / 32767), ("q4", 0.5 / 127)])
def test_scalar_reference_matches_numpy(dtype, act_rel):
    # The scalar kernel is W (as stored) times x, where q8/q4 first round x to int16/int8 per 32-block:
    # |x - x_q| <= dx/2 = max|x_block| * act_rel, so the result is within act_rel * (|W| @ max|x_block|).
    for rows, cols, w, x in _cases(dtype):
        stored = store(w, dtype)
        wd = dequant(stored, dtype, rows, cols)
        got = matmul("scalar", dtype, stored, rows, cols, x)
        want = x.astype(np.float64) @ wd.T
        if act_rel:
            xm = np.abs(x).reshape(x.shape[0], -1, 32).max(axis=2).repeat(32, axis=1)
            bound = act_rel * (xm @ np.abs(wd).T) * 1.0001
        else:
            bound = 0
        assert np.all(np.abs(got - want) <= bound + REL * (np.abs(x) @ np.abs(wd).T) + 1e-30), (dtype, rows, cols)


@pytest.mark.parametrize("family", RUNNABLE)
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8", "q4"])
def test_special_values(family, dtype):
    rng = np.random.default_rng(7)
    rows, cols = 19, 96
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[3] = 0  # a zero row
    w[5, :32] = 0  # a zero block
    stored = store(w, dtype)
    wd = dequant(stored, dtype, rows, cols)
    # zero input: exactly zero output
    assert np.array_equal(matmul(family, dtype, stored, rows, cols, np.zeros((1, cols))), np.zeros((1, rows)))
    # huge (finite) inputs: same relative accuracy, no overflow in the integer paths
    x = rng.standard_normal((2, cols)).astype(np.float32) * 1e15
    x[1, 40] = 3e16
    got = matmul(family, dtype, stored, rows, cols, x)
    ref = matmul("scalar", dtype, stored, rows, cols, x)
    assert np.all(np.isfinite(got))
    assert np.all(np.abs(got - ref) <= REL * (np.abs(x) @ np.abs(wd).T))
    # NaN policy: a NaN or an infinity in x makes every output of that vector non-finite, never a number
    for bad in (np.nan, np.inf, -np.inf):
        x = rng.standard_normal((2, cols)).astype(np.float32)
        x[1, 50] = bad
        got = matmul(family, dtype, stored, rows, cols, x)
        assert np.all(np.isfinite(got[0])) and not np.any(np.isfinite(got[1][np.any(wd != 0, axis=1)])), (bad,)


@pytest.mark.parametrize("dtype,rel", [("q8", 1 / 254), ("q4", 0.15)])
def test_quantize_round_trip(dtype, rel):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    w[0] = 0
    w[1, :32] = 1e-30  # tiny block: scale underflows f16, values round to 0
    w[2, 5] = 50  # an outlier inside a block
    back = dequantize_rows(quantize_rows(w, DTYPE_IDS[dtype], "W"), DTYPE_IDS[dtype], 64, 256)
    assert len(quantize_rows(w, DTYPE_IDS[dtype], "W")) == 64 * row_bytes(DTYPE_IDS[dtype], 256)
    blocks = np.abs(w).reshape(64, 8, 32).max(axis=2).repeat(32, axis=1)
    err = np.abs(back - w)
    # q8: round to nearest with step max/127 (scale rounded to f16: +2^-11); q4: the codebook's widest gap
    # is 23/127 of the block maximum, and the search may clip the maximum a little
    assert np.all(err <= rel * blocks * 1.002 + 1e-7)
    assert np.array_equal(back[0], np.zeros(256))
    if dtype == "q8":
        assert abs(back[2, 5] - 50) <= 50 / 254 * 1.002
    # q4 error on Gaussian data: the search beats absmax round-to-nearest 4-bit clearly
    if dtype == "q4":
        g = rng.standard_normal((256, 256)).astype(np.float32)
        ours = ((dequantize_rows(quantize_rows(g, 9, "g"), 9, 256, 256) - g) ** 2).mean()
        from quant_helpers import absmax_q4_0
        base = ((absmax_q4_0(g) - g) ** 2).mean()
        assert ours < 0.75 * base


def test_quantize_refuses_bad_values():
    for bad, msg in ((np.nan, "NaN"), (1e7, "beyond")):
        w = np.zeros((2, 64), np.float32)
        w[1, 3] = bad
        with pytest.raises(Exception, match=msg):
            quantize_rows(w, DTYPE_IDS["q4"], "W")
    out = bytearray(10)
    assert lib.rwkv_quantize(9, ffi.from_buffer("float[]", np.zeros(33, np.float32)), 1, 33, ffi.from_buffer(out),
                             10) != 0
    assert "multiple of 32" in last_error()
    # q4 needs two blocks: a row of 32 alone would cost 4.75 bits per weight
    assert lib.rwkv_quantize(9, ffi.from_buffer("float[]", np.zeros(32, np.float32)), 1, 32, ffi.from_buffer(out),
                             10) != 0
    assert "at least 64" in last_error()


def test_unknown_family_is_refused():
    w = np.zeros((1, 32), np.float32)
    assert lib.rwkv_matmul(b"sse9", 0, ffi.from_buffer(w), 1, 32, ffi.from_buffer("float[]", w), 1,
                           ffi.from_buffer("float[]", np.zeros(1, np.float32)), 1) != 0
    assert "unknown kernel family" in last_error()


# ---- RWKV_CPU_KERNEL --------------------------------------------------------------------------------------
_PROBE = ("import rwkv_cpu; from rwkv_cpu._ffi import ffi, lib; "
          "print(ffi.string(lib.rwkv_kernel_name()).decode()); print(ffi.string(lib.rwkv_kernel_note()).decode())")


def _probe(env_value):
    env = dict(os.environ)
    env["RWKV_CPU_KERNEL"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@pytest.mark.parametrize("family", RUNNABLE)
def test_env_override_selects_family(family):
    name, note = (_probe(family) + [""])[:2]
    assert name == family and note == ""


def test_env_override_falls_back_with_a_reason():
    for bad in ["sse9"] + [f for f in FAMILIES if f not in RUNNABLE and f != "neon"]:
        name, note = (_probe(bad) + [""])[:2]
        assert name in RUNNABLE and f"RWKV_CPU_KERNEL={bad} ignored" in note, (bad, name, note)


# ---- RWKV_CPU_PREFETCH (x86): the software prefetches are a speed choice, never a change of results -------------
_PF_PROBE = """
import sys, numpy as np
from rwkv_cpu._ffi import ffi, lib
from rwkv_cpu.convert.quantize import DTYPE_IDS, quantize_rows
print(ffi.string(lib.rwkv_cpu_features()).decode())
rng = np.random.default_rng(7)
out = []
for dtype in ["f32", "f16", "q8", "q4"]:
    for rows, cols in [(48, 4096), (33, 14336 // 4)]:  # whole groups, the rows with prefetches; odd row counts
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        stored = (w.astype("<f4").tobytes() if dtype == "f32" else w.astype("<f2").tobytes() if dtype == "f16"
                  else quantize_rows(w, DTYPE_IDS[dtype], "W"))
        for T in (1, 3, 8):
            x = rng.standard_normal((T, cols)).astype(np.float32)
            y = np.zeros((T, rows), np.float32)
            assert lib.rwkv_matmul(ffi.NULL, DTYPE_IDS[dtype], ffi.from_buffer(stored), rows, cols,
                                   ffi.from_buffer("float[]", x), T, ffi.from_buffer("float[]", y), 2) == 0
            out.append(y.ravel())
sys.stdout.write(np.concatenate(out).astype("<f4").tobytes().hex())
"""


def _pf_probe(value):
    env = dict(os.environ)
    env.pop("RWKV_CPU_PREFETCH", None)
    if value is not None:
        env["RWKV_CPU_PREFETCH"] = value
    out = subprocess.run([sys.executable, "-c", _PF_PROBE], env=env, capture_output=True, text=True, check=True)
    features, logits = out.stdout.split("\n", 1)
    return features.split(), logits


def test_prefetch_switch_is_followed_and_changes_no_result():
    on, logits_on = _pf_probe("1")
    off, logits_off = _pf_probe("0")
    default, _ = _pf_probe(None)
    bogus, _ = _pf_probe("yes")  # neither 0 nor 1: the CPU's default
    assert logits_on == logits_off and len(logits_on) > 1000
    for got in (on, off, default, bogus):  # two tokens at most, and never both
        assert not ("sw-prefetch" in got and "sw-prefetch-batches" in got), got
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        for got in (on, off, default, bogus):  # the x86 kernels' prefetches only: nothing to switch here
            assert "sw-prefetch" not in got and "sw-prefetch-batches" not in got, got
        return
    assert "sw-prefetch" in on and "sw-prefetch-batches" not in on
    assert "sw-prefetch" not in off and "sw-prefetch-batches" not in off
    with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as f:
        vendors = [line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")]
    if vendors:  # Linux: AMD (Hygon) -> only the small-batch loops prefetch; elsewhere all of them
        amd = vendors[0] in ("AuthenticAMD", "HygonGenuine")
        want = "sw-prefetch-batches" if amd else "sw-prefetch"
        for got in (default, bogus):
            assert want in got and ("sw-prefetch" in got) != amd, got
