"""The v5.2 forward pass against the official implementation's logits and states, and the Model/State API."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import rwkv_cpu
from conftest import V52_FIXTURES, reference

# fp32 compute on fp32 weights: the official package and we differ only in summation order.
ATOL_F32 = 1e-4


@pytest.mark.parametrize("layout", ["pth", "hf"])
@pytest.mark.parametrize("name", V52_FIXTURES)
def test_logits_and_state_match_reference(converted, name, layout):
    ids, ref_logits, ref_state = reference(name)
    model = rwkv_cpu.Model(converted(name, layout))
    assert model.arch == "v5.2"
    logits, state = model.forward(ids, all_logits=True)
    assert logits.shape == ref_logits.shape
    assert np.abs(logits - ref_logits).max() <= ATOL_F32
    np.testing.assert_array_equal(logits.argmax(1), ref_logits.argmax(1))
    got = state.to_dict()
    assert sorted(got) == sorted(ref_state)
    for k, v in ref_state.items():
        np.testing.assert_allclose(got[k], v, atol=ATOL_F32, rtol=1e-4, err_msg=k)


@pytest.mark.parametrize("name", V52_FIXTURES)
def test_f16_weights_stay_close(converted, name):
    # f16 keeps 11 significant bits (relative error <= 2^-11 per weight); over these models that moves
    # logits by a few hundredths at most. The bound is loose enough for summation-order noise and tight
    # enough to catch a wrong conversion (which moves logits by whole units).
    ids, ref_logits, _ = reference(name)
    logits, _ = rwkv_cpu.Model(converted(name, "pth", "f16")).forward(ids, all_logits=True)
    assert np.abs(logits - ref_logits).max() < 0.05
    assert (logits.argmax(1) == ref_logits.argmax(1)).mean() >= 0.95


@pytest.mark.parametrize("name", V52_FIXTURES)
def test_sequence_equals_token_by_token(converted, name):
    ids, _, _ = reference(name)
    model = rwkv_cpu.Model(converted(name))
    seq_logits, seq_state = model.forward(ids, all_logits=True)
    state = model.new_state()
    for t, tok in enumerate(ids):
        logits, state = model.forward(tok, state)
        np.testing.assert_allclose(logits, seq_logits[t], atol=1e-5, rtol=0)
    # The two paths sum in different orders (GEMM panels vs rows), so the states differ by float rounding: a few
    # ulps of values up to ~22 here (an ulp is 1.9e-6 above 16), hence a relative term beside the absolute one.
    np.testing.assert_allclose(state.to_numpy(), seq_state.to_numpy(), atol=1e-5, rtol=4e-6)


def test_long_sequence_crosses_chunks(converted):
    # more tokens than one evaluation chunk: chunk boundaries must not change anything
    model = rwkv_cpu.Model(converted("tiny-5v2-730K"))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, size=200)
    seq, _ = model.forward(ids, all_logits=True)
    last, _ = model.forward(ids)
    # the head runs on 64 rows (GEMM path) in one, on the last row (decode path) in the other: float order
    np.testing.assert_allclose(seq[-1], last, atol=1e-5, rtol=0)
    state = model.new_state()
    for i in range(0, 200, 37):
        part, state = model.forward(ids[i:i + 37], state, all_logits=True)
        np.testing.assert_allclose(part, seq[i:i + 37], atol=1e-5, rtol=0)


def test_state_copy_continues_identically(converted):
    ids, ref_logits, _ = reference("tiny-5v2-730K")
    model = rwkv_cpu.Model(converted("tiny-5v2-730K"))
    half = len(ids) // 2
    _, state = model.forward(ids[:half])
    saved = state.copy()
    a, _ = model.forward(ids[half:], state, all_logits=True)
    b, _ = model.forward(ids[half:], saved, all_logits=True)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - ref_logits[half:]).max() <= ATOL_F32
    # the copy is independent: advancing one leaves the other
    c = saved.copy()
    model.forward(ids[:3], saved)
    assert not np.array_equal(c.to_numpy(), saved.to_numpy())


def test_state_numpy_round_trip_and_reset(converted):
    model = rwkv_cpu.Model(converted("tiny-5v2-730K"))
    _, state = model.forward([1, 2, 3])
    flat = state.to_numpy()
    assert flat.shape == (model.state_size,) and np.any(flat != 0)
    other = model.new_state().load_numpy(flat)
    np.testing.assert_array_equal(other.to_numpy(), flat)
    state.reset()
    assert not np.any(state.to_numpy())
    with pytest.raises(rwkv_cpu.StateMismatchError):
        state.load_numpy(flat[:-1])


def test_batch_equals_one_at_a_time(converted):
    model = rwkv_cpu.Model(converted("random-5v2"))
    prompts = [[1, 2, 3], [400, 5], [65000, 7, 8, 9], [33]]
    states = [model.forward(p)[1] for p in prompts]
    solo = [s.copy() for s in states]
    nxt = [10, 20, 30, 40]
    batch_logits = model.forward_batch(nxt, states)
    for i, tok in enumerate(nxt):
        logits, solo[i] = model.forward(tok, solo[i])
        # a batch of 4 takes the GEMM path: float sums in another order than decode's, equal to rounding
        np.testing.assert_allclose(batch_logits[i], logits, atol=1e-5, rtol=0)
        np.testing.assert_allclose(states[i].to_numpy(), solo[i].to_numpy(), atol=1e-5, rtol=1e-5)
    with pytest.raises(rwkv_cpu.RwkvArgumentError):
        model.forward_batch([1, 2], [states[0], states[0]])
    with pytest.raises(rwkv_cpu.RwkvArgumentError):
        model.forward_batch([1, 2, 3], states[:2])


def test_threads_give_identical_results(converted):
    ids, _, _ = reference("random-5v2")
    one = rwkv_cpu.Model(converted("random-5v2"), n_threads=1)
    two = rwkv_cpu.Model(converted("random-5v2"), n_threads=2)
    assert one.n_threads == 1 and two.n_threads == 2
    np.testing.assert_array_equal(one.forward(ids, all_logits=True)[0], two.forward(ids, all_logits=True)[0])
    two.n_threads = 3
    assert two.n_threads == 3


def test_shared_model_from_several_threads(converted):
    model = rwkv_cpu.Model(converted("tiny-5v2-730K"), n_threads=2)
    ids, _, _ = reference("tiny-5v2-730K")
    expected, _ = model.forward(ids, all_logits=True)
    results, errors = [None] * 4, []

    def work(i):
        try:
            state = model.new_state()
            out = np.empty_like(expected)
            for t, tok in enumerate(ids):
                out[t], state = model.forward(tok, state)
            results[i] = out
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5, rtol=0)


def test_bad_tokens_raise_and_leave_state_unchanged(converted):
    model = rwkv_cpu.Model(converted("tiny-5v2-730K"))
    _, state = model.forward([5, 6])
    before = state.to_numpy()
    for bad in ([256], [1, 2, 999], [-1], [2**40]):
        with pytest.raises(rwkv_cpu.TokenError, match="out of range"):
            model.forward(bad, state)
    with pytest.raises(rwkv_cpu.RwkvArgumentError):
        model.forward([], state)
    with pytest.raises(rwkv_cpu.RwkvArgumentError):
        model.forward([1.5], state)
    with pytest.raises(rwkv_cpu.RwkvArgumentError):
        model.forward([[1, 2]], state)
    np.testing.assert_array_equal(state.to_numpy(), before)


def test_state_from_another_model_is_refused(converted):
    tiny = rwkv_cpu.Model(converted("tiny-5v2-730K"))
    rand = rwkv_cpu.Model(converted("random-5v2"))
    with pytest.raises(rwkv_cpu.StateMismatchError, match="another model"):
        tiny.forward([1], rand.new_state())
    with pytest.raises(rwkv_cpu.StateMismatchError):
        tiny.forward_batch([1], [rand.new_state()])
    # the same model in another dtype shares states
    f16 = rwkv_cpu.Model(converted("tiny-5v2-730K", "pth", "f16"))
    _, s = tiny.forward([1, 2])
    f16.forward([3], s)


def test_model_properties(converted):
    model = rwkv_cpu.Model(converted("random-5v2"))
    assert (model.n_layer, model.n_embd, model.n_head, model.head_size, model.n_ffn, model.n_vocab) == \
        (3, 128, 2, 64, 448, 65536)
    assert model.state_size == 3 * (2 * 128 + 2 * 64 * 64)
    names = {t.name for t in model.tensors()}
    assert "blocks.0.att.time_decay" in names and "blocks.0.ln0.weight" not in names
    assert model.metadata.get("source_format") in ("pth", "hf-safetensors", "hf-bin", "safetensors")
    assert "v5.2" in repr(model)
    with pytest.raises(rwkv_cpu.RwkvArgumentError):
        rwkv_cpu.Model(converted("random-5v2"), n_threads=-1)
