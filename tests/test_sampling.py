"""The sampler against a plain numpy reference (float64, full sorts, written for clarity; the sampler's exp is
float32, hence rtol 1e-5), each step alone and in combination, its edge cases, the RWKV penalty decay against ChatRWKV's dict algorithm, seeds and validation."""
from __future__ import annotations

import math

import numpy as np
import pytest

import rwkv_cpu
from rwkv_cpu import RwkvArgumentError, Sampler

SIZES = [1, 2, 7, 256, 1500, 65536]


# ---- the reference -----------------------------------------------------------------------------------------
def ref_adjust(logits, bias=None, banned=(), rep=1.0, recent=(), presence=0.0, frequency=0.0, occ=None):
    x = np.asarray(logits, dtype=np.float64).copy()
    for t, b in (bias or {}).items():
        x[t] += b
    for t in banned:
        x[t] = -np.inf
    for t in set(recent):
        x[t] = x[t] / rep if x[t] > 0 else x[t] * rep
    for t, c in (occ or {}).items():
        x[t] -= presence + c * frequency
    return x


def ref_probs(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, **adjust):
    x = ref_adjust(logits, **adjust)
    if temperature == 0 or top_k == 1:
        out = np.zeros_like(x)
        out[np.argmax(x)] = 1.0
        return out
    x = x / temperature
    order = np.argsort(-x, kind="stable")
    if 0 < top_k < x.size:
        x[order[top_k:]] = -np.inf
    p = np.exp(x - x.max())
    p /= p.sum()
    if top_p < 1.0:
        desc = np.sort(p)[::-1]
        cum = np.cumsum(desc)
        cutoff = desc[np.argmax(cum >= top_p)] if (cum >= top_p).any() else 0.0
        p[p < cutoff] = 0.0
        p /= p.sum()
    if min_p > 0.0:
        p[p < min_p * p.max()] = 0.0
        p /= p.sum()
    return p


def random_logits(rng, n, scale=3.0):
    return (rng.standard_normal(n) * scale).astype(np.float32)


# ---- each step alone ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.5])
def test_temperature(n, temperature):
    logits = random_logits(np.random.default_rng(n), n)
    np.testing.assert_allclose(Sampler(temperature).probs(logits), ref_probs(logits, temperature), rtol=1e-5,
                               atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("top_k", [1, 2, 5, 40, 1499, 65536, 70000])
def test_top_k(n, top_k):
    logits = random_logits(np.random.default_rng(n + top_k), n)
    got = Sampler(top_k=top_k).probs(logits)
    np.testing.assert_allclose(got, ref_probs(logits, top_k=top_k), rtol=1e-5, atol=1e-12)
    assert np.count_nonzero(got) == min(top_k, n)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("top_p", [1e-9, 0.1, 0.5, 0.85, 0.999, 1.0])
@pytest.mark.parametrize("scale", [0.1, 3.0])       # 0.1: a flat distribution, the nucleus spans most tokens
def test_top_p(n, top_p, scale):
    logits = random_logits(np.random.default_rng(n), n, scale)
    np.testing.assert_allclose(Sampler(top_p=top_p).probs(logits), ref_probs(logits, top_p=top_p), rtol=1e-5,
                               atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("min_p", [0.01, 0.2, 0.9, 1.0])
def test_min_p(n, min_p):
    logits = random_logits(np.random.default_rng(n), n)
    np.testing.assert_allclose(Sampler(min_p=min_p).probs(logits), ref_probs(logits, min_p=min_p), rtol=1e-5,
                               atol=1e-12)


@pytest.mark.parametrize("n", [7, 256, 65536])
@pytest.mark.parametrize("penalty", [0.5, 1.3])
def test_repetition_penalty_over_the_recent_window(n, penalty):
    rng = np.random.default_rng(n)
    logits = random_logits(rng, n)
    history = rng.integers(0, n, 100).tolist()
    s = Sampler(repetition_penalty=penalty, repeat_last_n=16)
    s.add_context(history[:90])
    for t in history[90:]:
        s.accept(t)
    want = ref_probs(logits, rep=penalty, recent=history[-16:])
    np.testing.assert_allclose(s.probs(logits), want, rtol=1e-5, atol=1e-12)


def chatrwkv_occurrence(tokens, decay, texts=None):
    """ChatRWKV PIPELINE.generate's bookkeeping, verbatim in spirit: a dict, decayed before each new token."""
    occurrence = {}
    for token in tokens:
        for k in occurrence:
            occurrence[k] *= decay
        www = 0 if texts is not None and texts[token] in " \t0123456789" else 1
        occurrence[token] = occurrence.get(token, 0) + www
    return occurrence


@pytest.mark.parametrize("decay", [1.0, 0.996, 0.5, 0.0])
def test_presence_frequency_with_decay_matches_chatrwkv(decay):
    rng = np.random.default_rng(3)
    n = 300
    logits = random_logits(rng, n)
    generated = rng.integers(0, 40, 200).tolist()
    s = Sampler(presence_penalty=0.4, frequency_penalty=0.7, penalty_decay=decay)
    for t in generated:
        s.accept(t)
    occ = chatrwkv_occurrence(generated, decay)
    got = s.occurrence()
    assert got.keys() == occ.keys()
    for k in occ:
        assert math.isclose(got[k], occ[k], rel_tol=1e-9, abs_tol=1e-12)
    want = ref_probs(logits, presence=0.4, frequency=0.7, occ=occ)
    np.testing.assert_allclose(s.probs(logits), want, rtol=1e-5, atol=1e-12)


def test_space_and_digit_tokens_do_not_count_for_frequency():
    tok = rwkv_cpu.Tokenizer.world()
    space, digit, word, crab = tok.encode(" ")[0], tok.encode("7")[0], tok.encode(" hello")[0], tok.encode("🦀")[0]
    texts = {space: " ", digit: "7", word: " hello", crab: "?"}
    generated = [space, word, digit, word, space, crab]
    s = Sampler(presence_penalty=1.0, frequency_penalty=1.0, penalty_decay=0.9, tokenizer=tok)
    for t in generated:
        s.accept(t)
    occ = chatrwkv_occurrence(generated, 0.9, texts)
    assert s.occurrence() == pytest.approx(occ)
    assert s.occurrence()[space] == 0 and s.occurrence()[digit] == 0     # still present: presence applies


def test_logit_bias_and_bans():
    rng = np.random.default_rng(5)
    logits = random_logits(rng, 1000)
    bias = {3: 5.0, 10: -2.5, 999: -np.inf}
    banned = [int(np.argmax(logits)), 17]
    s = Sampler(logit_bias=bias, banned_tokens=banned)
    np.testing.assert_allclose(s.probs(logits), ref_probs(logits, bias=bias, banned=banned), rtol=1e-5, atol=1e-12)


# ---- combinations -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", range(60))
def test_combinations_match_the_reference(case):
    rng = np.random.default_rng(1000 + case)
    n = int(rng.choice([5, 256, 3000, 65536]))
    logits = random_logits(rng, n, float(rng.choice([0.3, 2.0, 6.0])))
    kw = dict(temperature=float(rng.choice([0.0, 0.5, 1.0, 1.7])), top_k=int(rng.choice([0, 1, 3, 50])),
              top_p=float(rng.choice([1.0, 0.9, 0.5, 0.2])), min_p=float(rng.choice([0.0, 0.05, 0.3])))
    pen = dict(repetition_penalty=float(rng.choice([1.0, 1.2])), presence_penalty=float(rng.choice([0.0, 0.5])),
               frequency_penalty=float(rng.choice([0.0, 0.3])), penalty_decay=float(rng.choice([1.0, 0.99])))
    bias = {int(t): float(b) for t, b in zip(rng.integers(0, n, 3), rng.normal(0, 3, 3))}
    banned = rng.integers(0, n, 2).tolist()
    s = Sampler(**kw, **pen, repeat_last_n=8, logit_bias=bias, banned_tokens=banned)
    prompt, gen = rng.integers(0, n, 10).tolist(), rng.integers(0, n, 12).tolist()
    s.add_context(prompt)
    for t in gen:
        s.accept(t)
    want = ref_probs(logits, **kw, bias=bias, banned=banned, rep=pen["repetition_penalty"],
                     recent=(prompt + gen)[-8:], presence=pen["presence_penalty"],
                     frequency=pen["frequency_penalty"], occ=chatrwkv_occurrence(gen, pen["penalty_decay"]))
    got = s.probs(logits)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    token = s.sample(logits)
    assert got[token] > 0 and token not in banned


# ---- edge cases ---------------------------------------------------------------------------------------------------
def test_top_k_1_and_temperature_0_are_greedy():
    rng = np.random.default_rng(7)
    for n in SIZES:
        logits = random_logits(rng, n)
        for s in (Sampler(top_k=1, temperature=5.0, seed=1), Sampler(temperature=0.0)):
            assert all(s.sample(logits) == int(np.argmax(logits)) for _ in range(5))


def test_greedy_sees_the_penalties():
    logits = np.array([0.0, 5.0, 4.9], dtype=np.float32)
    s = Sampler(temperature=0, presence_penalty=1.0)
    assert s.sample(logits) == 1 and s.sample(logits) == 2     # token 1 is now penalised


def test_top_p_1_keeps_all():
    logits = random_logits(np.random.default_rng(8), 65536, 0.5)
    p = Sampler(top_p=1.0).probs(logits)
    assert np.count_nonzero(p) == 65536
    x = logits.astype(np.float64)
    np.testing.assert_allclose(p, np.exp(x - x.max()) / np.exp(x - x.max()).sum(), rtol=1e-5)


def test_banned_tokens_never_appear():
    logits = np.zeros(10, dtype=np.float32)
    logits[:3] = 10.0                                   # the three most likely tokens are banned
    s = Sampler(seed=0, banned_tokens=[0, 1, 2, 9])
    drawn = {s.sample(logits) for _ in range(3000)}
    assert drawn == {3, 4, 5, 6, 7, 8}


def test_everything_banned_is_an_error():
    with pytest.raises(RwkvArgumentError, match="every token is banned"):
        Sampler(banned_tokens=range(4)).sample(np.zeros(4, dtype=np.float32))


def test_draws_follow_the_distribution():
    logits = np.log(np.array([0.5, 0.25, 0.15, 0.1]))
    s = Sampler(seed=123)
    counts = np.bincount([s.sample(logits, accept=False) for _ in range(20000)], minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.5, 0.25, 0.15, 0.1], atol=0.015)


def test_seed_makes_a_run_reproducible():
    logits = random_logits(np.random.default_rng(9), 65536, 1.0)

    def run(seed):
        s = Sampler(temperature=1.0, top_p=0.95, presence_penalty=0.3, frequency_penalty=0.3, penalty_decay=0.996,
                    seed=seed)
        return [s.sample(logits) for _ in range(40)]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_reset_forgets_the_history():
    s = Sampler(temperature=0, presence_penalty=10.0)
    logits = np.array([1.0, 2.0], dtype=np.float32)
    assert [s.sample(logits), s.sample(logits)] == [1, 0]
    s.reset()
    assert s.sample(logits) == 1 and s.occurrence() == {1: 1.0}


def test_nan_logits_are_refused():
    with pytest.raises(RwkvArgumentError, match="NaN"):
        Sampler().sample(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(RwkvArgumentError, match="1-D"):
        Sampler().sample(np.zeros((2, 2), dtype=np.float32))


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(temperature="hot"), "temperature"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.01), "top_p"),
    (dict(top_p=-1), "top_p"),
    (dict(top_k=-1), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_k=True), "top_k"),
    (dict(min_p=-0.01), "min_p"),
    (dict(min_p=1.5), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(repeat_last_n=-1), "repeat_last_n"),
    (dict(presence_penalty=float("inf")), "presence_penalty"),
    (dict(frequency_penalty=float("nan")), "frequency_penalty"),
    (dict(penalty_decay=1.5), "penalty_decay"),
    (dict(penalty_decay=-0.5), "penalty_decay"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(logit_bias={-1: 1.0}), "logit_bias token id"),
    (dict(logit_bias={1: float("inf")}), r"\+inf"),
    (dict(logit_bias={1: float("nan")}), "logit_bias"),
    (dict(banned_tokens=[-3]), "banned token id"),
    (dict(banned_tokens=[300], n_vocab=256), "beyond the vocabulary"),
    (dict(logit_bias={256: 1.0}, n_vocab=256), "beyond the vocabulary"),
])
def test_invalid_values_raise_a_clear_error(kwargs, message):
    with pytest.raises(RwkvArgumentError, match=message):
        Sampler(**kwargs)


def test_ids_beyond_the_logits_are_caught_at_sampling():
    with pytest.raises(RwkvArgumentError, match="beyond the vocabulary"):
        Sampler(banned_tokens=[10]).sample(np.zeros(4, dtype=np.float32))


def test_top_p_keeps_tokens_tied_with_the_crossing_one():
    logits = np.log(np.array([0.4, 0.2, 0.2, 0.2, 1e-3]))        # cum 0.4, 0.6 crosses 0.5 on a 0.2
    p = Sampler(top_p=0.5).probs(logits)
    np.testing.assert_allclose(p[:4], np.array([0.4, 0.2, 0.2, 0.2]) / 1.0, rtol=1e-5)
    assert p[4] == 0.0
