"""Streaming generation: UTF-8 never split, stop strings across piece boundaries, stop tokens, the state after a
run, early close, the callback form, seeds, the prefix cache, argument errors."""
from __future__ import annotations

import random

import numpy as np
import pytest

import rwkv_cpu
from rwkv_cpu import PrefixCache, RwkvArgumentError, Sampler
from rwkv_cpu.generation import StopMatcher


def assert_same_run(a, b):
    """States or logits of the same tokens read two ways: one call over many tokens takes the GEMM path
    (csrc/kernels/gemm.h, T >= 4), whose float sums run in another order than decode's, so the two agree to
    float rounding (measured < 1e-6 here), not bit for bit. A wrong token or state is off by far more."""
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


class Scripted(Sampler):
    """A sampler that returns a fixed sequence of tokens (to drive the streaming logic exactly)."""

    def __init__(self, tokens):
        super().__init__()
        self.script = list(tokens)
        self.i = 0

    def sample(self, logits, accept=True):
        token = self.script[self.i]
        self.i += 1
        return token


@pytest.fixture(scope="module")
def tiny():
    return rwkv_cpu.Model(n_threads=1)          # byte tokenizer: every UTF-8 byte is a token


@pytest.fixture(scope="module")
def world(converted):
    return rwkv_cpu.Model(converted("random-5v2"), n_threads=1)


def pieces_of(model, script, **kw):
    gen = model.generate("x", max_tokens=len(script), sampler=Scripted(script), **kw)
    return list(gen), gen


# ---- UTF-8 ---------------------------------------------------------------------------------------------------
def test_bytes_model_never_splits_a_character(tiny):
    text = "aé中🙂b🦀"
    pieces, gen = pieces_of(tiny, list(text.encode("utf-8")))
    assert "".join(pieces) == text == gen.text
    assert pieces == ["a", "é", "中", "🙂", "b", "🦀"]         # one piece per character, never part of one


def test_world_model_holds_an_emoji_split_across_tokens(world):
    tok = world.tokenizer
    ids = tok.encode("我很好，谢谢！🙂 RWKV")
    assert [3319, 2417] == ids[ids.index(3319):ids.index(3319) + 2]   # 🙂 is two tokens, neither a character
    pieces, gen = pieces_of(world, ids)
    assert "".join(pieces) == "我很好，谢谢！🙂 RWKV"
    assert all("\ufffd" not in p for p in pieces) and "🙂" in pieces
    assert len(pieces) == len(ids) - 1                          # the emoji's first token yields nothing


def test_incomplete_character_at_the_end_becomes_a_replacement_char(tiny):
    pieces, gen = pieces_of(tiny, list("ok".encode()) + [0xF0, 0x9F])
    assert "".join(pieces) == "ok\ufffd" and gen.stop_reason == "max_tokens"


# ---- stop strings -------------------------------------------------------------------------------------------------
def test_stop_string_spanning_tokens_is_trimmed(tiny):
    text = "Hello there\n\nUser: more text"
    pieces, gen = pieces_of(tiny, list(text.encode()), stop="\n\nUser:")
    assert "".join(pieces) == "Hello there" == gen.text
    assert all("\n" not in p for p in pieces)                   # the held-back "\n\n" never went out
    assert gen.stop_reason == "stop_string" and gen.stop == "\n\nUser:"
    assert bytes(gen.tokens).decode() == "Hello there\n\nUser:"   # the token completing the stop was read


def test_a_false_start_of_a_stop_string_is_released(tiny):
    text = "ab\n\nUsecd\n\nUs"
    pieces, gen = pieces_of(tiny, list(text.encode()), stop=["\n\nUser:", "zz"])
    assert "".join(pieces) == text and gen.stop_reason == "max_tokens"


def test_stop_string_inside_one_world_token(world):
    tok = world.tokenizer
    ids = tok.encode("Sure.\n\nUser: next")
    assert 261 in ids                                           # "\n\n" is one token
    pieces, gen = pieces_of(world, ids, stop="\n\n")
    assert "".join(pieces) == "Sure." and gen.stop == "\n\n"
    pieces, gen = pieces_of(world, ids, stop=[".\n", "Us"])      # the earliest occurrence wins
    assert "".join(pieces) == "Sure"


@pytest.mark.parametrize("seed", range(300))
def test_stop_matcher_against_brute_force(seed):
    rng = random.Random(seed)
    alphabet = "ab\n:é"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
    stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 8))))
    pieces = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
    m = StopMatcher(stops)
    out, hit = "", False
    for p in pieces:
        o, hit = m.push(p)
        out += o
        for s in stops:                       # nothing emitted can be followed into a stop string later
            assert s not in out
        if hit:
            break
    if not hit:
        out += m.finish()
    hits = [text.find(s) for s in stops if s in text]
    want = text[:min(hits)] if hits else text
    assert out == want and hit == bool(hits)


# ---- stop tokens, state, limits --------------------------------------------------------------------------------------
def test_stop_token_ends_without_reading_it(world):
    tok = world.tokenizer
    prompt = tok.encode("User: hi\n\nAssistant:")
    answer = tok.encode(" Hello!")
    gen = world.generate(prompt, 10, sampler=Scripted(answer + [0, 123]))
    assert "".join(gen) == " Hello!" and gen.stop_reason == "stop_token" and gen.stop == 0
    assert gen.tokens == answer
    ref_logits, ref_state = world.forward(prompt + answer)
    assert_same_run(gen.state.to_numpy(), ref_state.to_numpy())
    assert_same_run(gen.logits, ref_logits)


def test_state_after_sampling_is_the_state_of_the_whole_text(world):
    gen = world.generate("Once upon a time", 12, temperature=0.8, seed=3, stop_tokens=[])
    text = "".join(gen)
    assert gen.stop_reason == "max_tokens" and len(gen.tokens) == 12
    _, ref = world.forward(world.tokenizer.encode("Once upon a time") + gen.tokens)
    assert_same_run(gen.state.to_numpy(), ref.to_numpy())
    assert world.tokenizer.decode(gen.tokens) == text


def test_continue_from_a_given_state(world):
    _, state = world.forward(world.tokenizer.encode("Hello"))
    before = state.copy()
    gen = world.generate(" world", 3, state=state, temperature=0, stop_tokens=[])
    list(gen)
    assert gen.state is state
    _, ref = world.forward(world.tokenizer.encode(" world") + gen.tokens, before)
    assert_same_run(state.to_numpy(), ref.to_numpy())


def test_max_tokens_zero(world):
    gen = world.generate("Hi", 0)
    assert list(gen) == [] and gen.stop_reason == "max_tokens" and gen.tokens == []


def test_close_early_leaves_the_state_at_what_was_shown(tiny):
    gen = tiny.generate("x", 50, sampler=Scripted(list(b"abcdefgh")))
    assert next(gen) == "a" and next(gen) == "b"
    gen.close()
    assert gen.stop_reason == "closed" and bytes(gen.tokens) == b"ab"
    _, ref = tiny.forward(list(b"xab"))
    assert_same_run(gen.state.to_numpy(), ref.to_numpy())


def test_callback_form(world):
    got = []
    done = world.complete("The weather", 15, callback=got.append, seed=7)
    assert "".join(got) == done.text and done.done and done.tokens_per_second > 0


def test_seed_reproducibility(world):
    a = world.complete("Tell me", 20, temperature=1.0, top_p=0.9, seed=11, presence_penalty=0.3).tokens
    b = world.complete("Tell me", 20, temperature=1.0, top_p=0.9, seed=11, presence_penalty=0.3).tokens
    c = world.complete("Tell me", 20, temperature=1.0, top_p=0.9, seed=12, presence_penalty=0.3).tokens
    assert a == b and a != c


def test_banned_tokens_in_generation(world):
    gen = world.complete("Hi", 30, temperature=2.0, top_p=1.0, seed=1, banned_tokens=list(range(1000, 65536)),
                         stop_tokens=[])
    assert all(t < 1000 for t in gen.tokens) and len(gen.tokens) == 30


# ---- prefix cache --------------------------------------------------------------------------------------------------
def test_prefix_cache_hit_gives_the_logits_of_a_fresh_run(world):
    tok = world.tokenizer
    cache = PrefixCache(world, max_bytes=64 << 20)
    system = tok.encode("System: you are terse and kind.\n\n") * 3
    q1, q2 = tok.encode("User: one?\n\nAssistant:"), tok.encode("User: two?\n\nAssistant:")
    cache.forward(system)
    logits, state = cache.forward(system + q2)
    assert cache.stats["hits"] == 1 and cache.stats["tokens_reused"] == len(system)
    assert cache.stats["tokens_evaluated"] == len(system) + len(q2)
    fresh_logits, fresh_state = world.forward(system + q2)
    assert np.abs(logits - fresh_logits).max() <= 1e-5 and np.argmax(logits) == np.argmax(fresh_logits)
    split_logits, _ = world.forward(q2, world.forward(system)[1])
    assert np.array_equal(logits, split_logits)                 # same computation, bit for bit
    assert np.array_equal(state.to_numpy(), world.forward(q2, world.forward(system)[1])[1].to_numpy())
    # an exact hit reads nothing and returns an independent state
    l2, s2 = cache.forward(system + q2)
    assert np.array_equal(l2, logits) and cache.stats["tokens_evaluated"] == len(system) + len(q2)
    world.forward(q1, s2)
    l3, _ = cache.forward(system + q2)
    assert np.array_equal(l3, logits)


def test_prefix_cache_finds_shared_prefixes_and_evicts(tiny):
    cache = PrefixCache(tiny, max_bytes=10 << 20, min_tokens=4)
    a, b, c = list(b"common prefix: apples"), list(b"common prefix: bananas"), list(b"common prefix: cherries")
    cache.forward(a)
    cache.forward(b)                     # read in two parts: the shared "common prefix: " gets an entry
    assert cache.stats["tokens_evaluated"] == len(a) + len(b)
    cache.forward(c)
    n = len(b"common prefix: ")
    assert cache.stats["tokens_reused"] == n
    fresh, _ = tiny.forward(c)
    split, _ = tiny.forward(c[n:], tiny.forward(c[:n])[1])          # what the cache computed: the same split
    cached = cache.forward(c)[0]
    assert np.array_equal(cached, split)
    # against one call: the 8-token rest takes the small-batch kernels, the 23-token call the GEMM
    assert np.abs(cached - fresh).max() <= 1e-5 and np.argmax(cached) == np.argmax(fresh)
    per_entry = tiny.state_size * 4 + tiny.n_vocab * 4
    small = PrefixCache(tiny, max_bytes=2 * per_entry + 400)
    for i in range(5):
        small.forward(list(b"entry %d" % i))
    assert len(small) == 2 and small.stats["evictions"] == 3 and small.nbytes <= small.max_bytes


def test_generate_with_a_cache(world):
    tok = world.tokenizer
    cache = PrefixCache(world)
    system = tok.encode("You answer in one word.\n\n")
    cache.forward(system)
    gen = world.generate(system + tok.encode("User: colour of the sky?\n\nAssistant:"), 5, cache=cache,
                         temperature=0)
    text = "".join(gen)
    ref = world.generate(system + tok.encode("User: colour of the sky?\n\nAssistant:"), 5, temperature=0)
    assert gen.n_cached_tokens == len(system) and text == "".join(ref)


# ---- errors -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(max_tokens=-1), "max_tokens"),
    (dict(temperatur=0.5), "unknown generation argument.*temperatur"),
    (dict(sampler=Sampler(), temperature=0.5), "not both"),
    (dict(stop=[""]), "non-empty"),
    (dict(stop=[3]), "non-empty str"),
    (dict(top_p=0.0), "top_p"),
    (dict(banned_tokens=[70000]), "beyond the vocabulary"),
    (dict(state=object()), "State"),
])
def test_bad_arguments(world, kwargs, message):
    with pytest.raises(RwkvArgumentError, match=message):
        world.generate("Hi", **kwargs)


def test_state_and_cache_are_exclusive(world):
    with pytest.raises(RwkvArgumentError, match="not both"):
        world.generate("Hi", state=world.new_state(), cache=PrefixCache(world))
    with pytest.raises(RwkvArgumentError, match="empty"):
        world.generate("", 5)


# ---- the command line --------------------------------------------------------------------------------------------
def test_cli_generate_sampling_flags_and_stop():
    import os
    import subprocess
    import sys
    args = [sys.executable, "-m", "rwkv_cpu.cli", "generate", "--threads", "1", "Hello", "-n", "60", "--seed", "4",
            "--min-p", "0.05", "--presence-penalty", "0.5", "--frequency-penalty", "0.5", "--penalty-decay", "0.99",
            "--repetition-penalty", "1.1"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=os.path.dirname(__file__))
    assert p.returncode == 0, p.stderr
    text = p.stdout[len("Hello"):-1]
    assert len(text) > 0 and "stop: max_tokens" in p.stderr
    stop = text[len(text) // 2:len(text) // 2 + 2]           # a stop string taken from the run itself
    q = subprocess.run(args + ["--stop", stop.replace("\\", "\\\\").replace("\n", "\\n")], capture_output=True,
                       text=True, timeout=120, cwd=os.path.dirname(__file__))
    assert q.returncode == 0 and "stop: stop_string" in q.stderr
    assert q.stdout[len("Hello"):-1] == text[:text.index(stop)]
    bad = subprocess.run(args + ["--min-p", "2"], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(__file__))
    assert bad.returncode == 1 and "min_p" in bad.stderr

