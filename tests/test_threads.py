"""Thread safety (docs/SECURITY.md, "Threads"): one loaded Model used from several Python threads, each with its
own State, gives exactly the results of using it from one thread; tokenizers are shared freely; the GIL is
released while C evaluates, so other Python threads run meanwhile."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import rwkv_cpu

N_THREADS = 4
ROUNDS = 3


@pytest.fixture(scope="module")
def model():
    return rwkv_cpu.Model(n_threads=2)


def _prompts(model):
    texts = ["The cat sat on the mat.", "Once upon a time there was", "RWKV is a recurrent network",
             "0123456789 abcdefghij KLMNOP"]
    return [model.tokenizer.encode(t) for t in texts[:N_THREADS]]


def _run(model, tokens, out, key):
    """Feed tokens in ROUNDS calls on a new state; keep every call's logits and the final state."""
    state = model.new_state()
    logits = []
    for r in range(ROUNDS):
        lg, state = model.forward(tokens, state)
        logits.append(lg.copy())
    out[key] = (np.stack(logits), state.to_numpy())


def _run_threads(target, args_list):
    errors = []

    def wrap(*a):
        try:
            target(*a)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=a) for a in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_shared_model_own_states_match_sequential(model):
    prompts = _prompts(model)
    sequential, concurrent = {}, {}
    for i, toks in enumerate(prompts):
        _run(model, toks, sequential, i)
    for repeat in range(3):
        _run_threads(_run, [(model, toks, concurrent, i) for i, toks in enumerate(prompts)])
        for i in range(len(prompts)):
            np.testing.assert_array_equal(concurrent[i][0], sequential[i][0])
            np.testing.assert_array_equal(concurrent[i][1], sequential[i][1])


def test_batch_and_single_calls_interleave(model):
    """forward_batch in one thread while others call forward: each gets what it gets alone."""
    prompts = _prompts(model)
    prefix = [model.forward(p)[1] for p in prompts]
    step = [int(p[-1]) for p in prompts]
    alone = model.forward_batch(step, [s.copy() for s in prefix])
    singles = {}
    _run(model, prompts[0], singles, "ref")
    got = {}

    def batch():
        for _ in range(ROUNDS):
            got.setdefault("batch", []).append(model.forward_batch(step, [s.copy() for s in prefix]))

    _run_threads(lambda f, *a: f(*a), [(batch,), (_run, model, prompts[0], got, "single")])
    for b in got["batch"]:
        np.testing.assert_array_equal(b, alone)
    np.testing.assert_array_equal(got["single"][0], singles["ref"][0])


def test_shared_tokenizer(model):
    tok = model.tokenizer
    texts = [("ab\u00e9\u4f60 %d " % i) * 50 for i in range(N_THREADS)]
    want = [tok.encode(t) for t in texts]
    got = {}

    def work(i):
        for _ in range(20):
            ids = tok.encode(texts[i])
            assert ids == want[i]
            assert tok.decode(ids) == texts[i]
        got[i] = True

    _run_threads(work, [(i,) for i in range(N_THREADS)])
    assert len(got) == N_THREADS


def test_two_models_in_two_threads(model):
    other = rwkv_cpu.Model(n_threads=1)
    prompts = _prompts(model)
    sequential, concurrent = {}, {}
    _run(model, prompts[0], sequential, "a")
    _run(other, prompts[1], sequential, "b")
    _run_threads(_run, [(model, prompts[0], concurrent, "a"), (other, prompts[1], concurrent, "b")])
    for k in "ab":
        np.testing.assert_array_equal(concurrent[k][0], sequential[k][0])


def test_gil_is_released_during_evaluation(model):
    """While one thread is inside a long rwkv_eval, another thread keeps running Python. If the call held the
    GIL, the ticker could not run at all between the evaluating thread's two timestamps (it needs the GIL for
    every tick), so it would see at most the tick in flight at each end."""
    tokens = (model.tokenizer.encode("The quick brown fox jumps over the lazy dog. ") * 40)[:1500]
    window = {}
    ticks = []
    stop = threading.Event()

    def evaluate():
        window["start"] = time.perf_counter()
        model.forward(tokens)
        window["end"] = time.perf_counter()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.002)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        evaluate()
    finally:
        stop.set()
        t.join()
    inside = [x for x in ticks if window["start"] < x < window["end"]]
    duration = window["end"] - window["start"]
    assert len(inside) >= 10, f"only {len(inside)} ticks of another thread during a {duration:.3f} s evaluation"


def test_set_threads_while_others_evaluate(model):
    """Changing the pool size while other threads evaluate waits for the running evaluation; results are the
    same (each output row is computed whole by one thread, whatever the pool size)."""
    prompts = _prompts(model)
    sequential, concurrent = {}, {}
    for i, toks in enumerate(prompts):
        _run(model, toks, sequential, i)
    stop = threading.Event()

    def toggle():
        n = 0
        while not stop.is_set():
            model.n_threads = 1 + n % 2
            n += 1
            time.sleep(0.001)

    t = threading.Thread(target=toggle)
    t.start()
    try:
        _run_threads(_run, [(model, toks, concurrent, i) for i, toks in enumerate(prompts)])
    finally:
        stop.set()
        t.join()
        model.n_threads = 2
    for i in range(len(prompts)):
        np.testing.assert_array_equal(concurrent[i][0], sequential[i][0])
        np.testing.assert_array_equal(concurrent[i][1], sequential[i][1])
