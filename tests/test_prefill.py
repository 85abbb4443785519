"""Prompt processing (sequence mode) and batched decode: one call over many tokens, or one token of many
sequences, runs every matrix product as a GEMM (csrc/kernels/gemm.h) and must compute what token-by-token
decode computes, for every RWKV version and weight type; the GEMM kernels against the scalar reference on
odd shapes (every family this CPU runs; tests/c/test_kernels.c adds SIMDe AVX-512 and NEON)."""
from __future__ import annotations

import numpy as np
import pytest

import rwkv_cpu
from rwkv_cpu._ffi import lib

from conftest import VERSION_FIXTURES
from test_kernels import REL, RUNNABLE, SIMD, dequant, matmul, store

CHUNK = int(lib.rwkv_eval_chunk())
# one fixture per architecture: v4, v5.0, v5.1, v5.2, v6, v7
ARCH_FIXTURES = sorted(set(VERSION_FIXTURES) - {"tiny-4v0-660K"}) + ["random-5v2"]


def token_by_token(model, ids, state=None):
    """Logits [T, V] and the final state, feeding one token per call (the decode path)."""
    state = state or model.new_state()
    rows = []
    for t in ids:
        logits, state = model.forward([int(t)], state)
        rows.append(logits)
    return np.stack(rows), state


def assert_same(seq, state_seq, tbt, state_tbt, bound):
    """Sequence mode against token by token: logits within bound, the same argmax wherever the choice is
    not a near-tie of the reference, final states equal to float rounding."""
    assert np.abs(seq - tbt).max() <= bound, np.abs(seq - tbt).max()
    top2 = np.sort(tbt, axis=1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > 2 * bound
    assert np.array_equal(seq.argmax(1)[decisive], tbt.argmax(1)[decisive])
    np.testing.assert_allclose(state_seq.to_numpy(), state_tbt.to_numpy(), rtol=1e-4, atol=1e-4)


# f32, f16: the same float products summed in another order (measured max |dlogit| 3e-6 on these fixtures);
# a wrong chunk boundary, token shift or state hand-over moves logits by whole units.
@pytest.mark.parametrize("name", ARCH_FIXTURES)
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_sequence_equals_token_by_token(converted, name, dtype):
    model = rwkv_cpu.Model(converted(name, dtype=dtype), n_threads=2)
    ids = np.random.default_rng(1).integers(0, model.n_vocab, size=CHUNK + 9)
    seq, state_seq = model.forward(ids, all_logits=True)
    tbt, state_tbt = token_by_token(model, ids)
    assert_same(seq, state_seq, tbt, state_tbt, 1e-4)
    # logits only for the last position: the same row
    last, _ = model.forward(ids)
    assert np.abs(last - seq[-1]).max() <= 1e-4


# q8, q4: both paths multiply the same integers (the activations quantized the same way, quant.h / gemm.h),
# but each activation is re-quantized at every layer, and a float-rounding difference upstream (the paths sum
# in different orders) can move a value across a rounding boundary: one int16 (q8) or int8 (q4) step of its
# block, which then travels through the recurrence. So the two paths differ by a fraction of what activation
# rounding costs the model anyway. The bound is relative to the model's own quantization error (decode vs
# the f32 model): measured max |seq - decode| / max |decode - f32| on the fixtures: q8 0.002-0.006, q4
# 0.013-0.18 (the trained tiny model). A wrong kernel, layout or state moves logits by more than that error.
QUANT_RATIO = {"q8": 0.03, "q4": 0.3}


@pytest.mark.parametrize("name", ARCH_FIXTURES + ["tiny-5v2-730K"])
@pytest.mark.parametrize("dtype", ["q8", "q4"])
def test_quantized_sequence_equals_token_by_token(converted, name, dtype):
    ids = np.random.default_rng(1).integers(0, 256, size=CHUNK + 9)
    f32, _ = token_by_token(rwkv_cpu.Model(converted(name, dtype="f32"), n_threads=2), ids)
    model = rwkv_cpu.Model(converted(name, dtype=dtype), n_threads=2)
    seq, state_seq = model.forward(ids, all_logits=True)
    tbt, state_tbt = token_by_token(model, ids)
    err, qerr = np.abs(seq - tbt), np.abs(tbt - f32)
    assert err.max() <= QUANT_RATIO[dtype] * qerr.max(), (err.max(), qerr.max())
    top2 = np.sort(tbt, axis=1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > 2 * err.max()
    assert decisive.mean() > 0.5 and np.array_equal(seq.argmax(1)[decisive], tbt.argmax(1)[decisive])
    scale = np.abs(state_tbt.to_numpy()).max()
    assert np.abs(state_seq.to_numpy() - state_tbt.to_numpy()).max() <= QUANT_RATIO[dtype] * scale


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_chunk_boundaries(converted, n):
    model = rwkv_cpu.Model(converted("random-6v0"), n_threads=2)
    rng = np.random.default_rng(n)
    prefix = rng.integers(0, model.n_vocab, size=5)
    ids = rng.integers(0, model.n_vocab, size=n)
    _, start = model.forward(prefix)  # not the zero state: the state hand-over is tested too
    seq, state_seq = model.forward(ids, start.copy(), all_logits=True)
    tbt, state_tbt = token_by_token(model, ids, start.copy())
    assert seq.shape == (n, model.n_vocab)
    assert_same(seq, state_seq, tbt, state_tbt, 1e-4)


def test_long_prompt_in_pieces(converted):
    # a prompt read in pieces of odd lengths continues exactly as one long read
    model = rwkv_cpu.Model(converted("random-7v0"), n_threads=2)
    ids = np.random.default_rng(5).integers(0, model.n_vocab, size=2 * CHUNK + 30)
    whole, state_whole = model.forward(ids, all_logits=True)
    state = model.new_state()
    pos = 0
    for size in (1, 6, CHUNK + 3, 2, CHUNK - 1, 1000):
        part, state = model.forward(ids[pos:pos + size], state, all_logits=True)
        assert np.abs(part - whole[pos:pos + size]).max() <= 1e-4
        pos += size
        if pos >= len(ids):
            break
    np.testing.assert_allclose(state.to_numpy(), state_whole.to_numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ARCH_FIXTURES)
@pytest.mark.parametrize("B", [1, 4, 8, 16])
def test_batch_equals_one_at_a_time(converted, name, B):
    model = rwkv_cpu.Model(converted(name, dtype="f16" if B == 8 else "f32"), n_threads=2)
    rng = np.random.default_rng(B)
    # each sequence at its own position: prompts of different lengths (one empty: a fresh state)
    states = [model.forward(rng.integers(0, model.n_vocab, size=i % 7))[1] if i % 7 else model.new_state()
              for i in range(B)]
    solo = [s.copy() for s in states]
    for step in range(3):
        toks = rng.integers(0, model.n_vocab, size=B)
        batch = model.forward_batch(toks, states)
        assert batch.shape == (B, model.n_vocab)
        for i in range(B):
            one, solo[i] = model.forward([int(toks[i])], solo[i])
            assert np.abs(batch[i] - one).max() <= 1e-4, (step, i)
            np.testing.assert_allclose(states[i].to_numpy(), solo[i].to_numpy(), rtol=1e-4, atol=1e-4)


def test_batch_larger_than_a_chunk(converted):
    model = rwkv_cpu.Model(converted("random-5v2"), n_threads=2)
    B = CHUNK + 3
    states = [model.new_state() for _ in range(B)]
    toks = np.arange(B) % model.n_vocab
    batch = model.forward_batch(toks, states)
    for i in (0, CHUNK - 1, CHUNK, B - 1):
        one, _ = model.forward([int(toks[i])])
        assert np.abs(batch[i] - one).max() <= 1e-4


# ---- several vectors per product: the GEMM kernels (T >= 4; q4 on AVX-512 from 24, its rows function below) and
# the multi-vector rows functions, against the scalar reference and numpy ------------------------------------------
GEMM_T = [4, 7, 13, 16, 17, 25, 40]
GEMM_COLS = {"f32": [1, 7, 300, 513, 1100], "f16": [1, 7, 300, 513, 1100],
             "q8": [32, 96, 160, 544, 2080], "q4": [64, 96, 160, 544, 2080]}
GEMM_ROWS = [1, 31, 33, 100]


def _gemm_cases(dtype):
    rng = np.random.default_rng(100 + sum(map(ord, dtype)))
    i = 0
    for cols in GEMM_COLS[dtype]:
        for rows in GEMM_ROWS:
            T = GEMM_T[i % len(GEMM_T)]
            i += 1
            yield rows, cols, rng.standard_normal((rows, cols)).astype(np.float32) * 0.05, \
                rng.standard_normal((T, cols)).astype(np.float32)


@pytest.mark.parametrize("family", SIMD)
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8", "q4"])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_matches_scalar(family, dtype, threads):
    for rows, cols, w, x in _gemm_cases(dtype):
        stored = store(w, dtype)
        ref = matmul("scalar", dtype, stored, rows, cols, x)
        got = matmul(family, dtype, stored, rows, cols, x, threads)
        scale = np.abs(x) @ np.abs(dequant(stored, dtype, rows, cols)).T
        assert np.all(np.abs(got - ref) <= REL * scale + 1e-30), (family, dtype, rows, cols, x.shape[0])


# q8's GEMM reads int16 activations (its decode path's), q4's int8 ones: |x - x_q| <= dx / 2
@pytest.mark.parametrize("dtype,act_rel", [("f32", 0), ("f16", 0), ("q8", 0.5 / 32767), ("q4", 0.5 / 127)])
def test_scalar_gemm_matches_numpy(dtype, act_rel):
    for rows, cols, w, x in _gemm_cases(dtype):
        stored = store(w, dtype)
        wd = dequant(stored, dtype, rows, cols)
        got = matmul("scalar", dtype, stored, rows, cols, x, 2)
        want = x.astype(np.float64) @ wd.T
        bound = 0
        if act_rel:
            xm = np.abs(x).reshape(x.shape[0], -1, 32).max(axis=2).repeat(32, axis=1)
            bound = act_rel * (xm @ np.abs(wd).T) * 1.0001
        assert np.all(np.abs(got - want) <= bound + REL * (np.abs(x) @ np.abs(wd).T) + 1e-30), (dtype, rows, cols)


@pytest.mark.parametrize("family", RUNNABLE)
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8", "q4"])
def test_gemm_special_values(family, dtype):
    rng = np.random.default_rng(9)
    rows, cols, T = 37, 96, 7
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[3] = 0
    stored = store(w, dtype)
    wd = dequant(stored, dtype, rows, cols)
    assert np.array_equal(matmul(family, dtype, stored, rows, cols, np.zeros((T, cols))), np.zeros((T, rows)))
    x = rng.standard_normal((T, cols)).astype(np.float32) * 1e15
    got = matmul(family, dtype, stored, rows, cols, x)
    assert np.all(np.isfinite(got))
    assert np.all(np.abs(got - matmul("scalar", dtype, stored, rows, cols, x)) <= REL * (np.abs(x) @ np.abs(wd).T))
    for bad in (np.nan, np.inf):
        x = rng.standard_normal((T, cols)).astype(np.float32)
        x[4, 50] = bad
        got = matmul(family, dtype, stored, rows, cols, x)
        others = np.delete(got, 4, axis=0)
        assert np.all(np.isfinite(others)) and not np.any(np.isfinite(got[4][np.any(wd != 0, axis=1)])), bad


@pytest.mark.parametrize("dtype", ["q8", "q4"])
def test_quantized_batch_equals_one_at_a_time(converted, dtype):
    # the bound of test_quantized_sequence_equals_token_by_token, for one step of 8 sequences
    name = "tiny-5v2-730K"
    f32 = rwkv_cpu.Model(converted(name, dtype="f32"), n_threads=2)
    model = rwkv_cpu.Model(converted(name, dtype=dtype), n_threads=2)
    rng = np.random.default_rng(3)
    prompts = [rng.integers(0, 256, size=n) for n in (1, 2, 3, 5, 8, 13, 21, 34)]
    states = [model.forward(p)[1] for p in prompts]
    toks = rng.integers(0, 256, size=8)
    batch = model.forward_batch(toks, [s.copy() for s in states])
    for i, p in enumerate(prompts):
        one, _ = model.forward([int(toks[i])], states[i].copy())
        ref, _ = f32.forward(list(p) + [int(toks[i])])
        assert np.abs(batch[i] - one).max() <= QUANT_RATIO[dtype] * np.abs(one - ref).max(), i
