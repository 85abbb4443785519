"""Evaluation: perplexity and LAMBADA numbers against values computed from the official reference logits,
model comparison (KL, top-1), the `rwkv-cpu perplexity` command, and the progress bar."""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import rwkv_cpu
from rwkv_cpu import evaluate
from rwkv_cpu.progress import Progress, line_progress
from conftest import fixture_dir, reference


def ref_logprobs(logits: np.ndarray, targets) -> np.ndarray:
    """Straight from the definition, in float64."""
    x = logits.astype(np.float64)
    lse = np.log(np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1)) + x.max(axis=1)
    return x[np.arange(len(targets)), targets] - lse


@pytest.fixture(scope="module")
def tiny():
    return rwkv_cpu.Model(n_threads=1)


@pytest.fixture(scope="module")
def world(converted):
    return rwkv_cpu.Model(converted("random-5v2"), n_threads=1)


@pytest.mark.parametrize("name", ["tiny-5v2-730K", "random-5v2"])
def test_perplexity_matches_the_reference_logits(name, tiny, world):
    model = tiny if name.startswith("tiny") else world
    ids, ref_logits, _ = reference(name)
    want = math.exp(-ref_logprobs(ref_logits[:-1], ids[1:]).mean())
    for chunk in (1, 7, 128):
        r = evaluate.perplexity(model, ids, bos=False, chunk=chunk)
        assert r.n_predicted == len(ids) - 1
        assert r.perplexity == pytest.approx(want, rel=1e-5)
    with open(os.path.join(fixture_dir(name), "tokens.json"), encoding="utf-8") as f:
        text = json.load(f)["text"]
    assert evaluate.perplexity(model, text, bos=False).perplexity == pytest.approx(want, rel=1e-5)
    assert r.bits_per_byte == pytest.approx(-ref_logprobs(ref_logits[:-1], ids[1:]).sum() / math.log(2)
                                            / len(model.tokenizer.decode_bytes(ids[1:])), rel=1e-5)


def test_bos_predicts_every_token(world):
    ids = world.tokenizer.encode("Hello there, general")
    r = evaluate.perplexity(world, ids)                     # World vocab: starts with id 0 by default
    assert r.n_predicted == len(ids)
    logits, _ = world.forward([0] + ids[:-1], all_logits=True)
    assert r.perplexity == pytest.approx(math.exp(-ref_logprobs(logits, ids).mean()), rel=1e-9)


def test_compare_a_model_with_itself_and_with_its_f16_file(world, converted):
    ids = reference("random-5v2")[0]
    same = evaluate.perplexity(world, ids, other=world)
    assert same.compare.mean_kl == 0.0 and same.compare.top1_agreement == 1.0
    assert same.other_perplexity == same.perplexity
    f16 = rwkv_cpu.Model(converted("random-5v2", "pth", "f16"), n_threads=1)
    r = evaluate.perplexity(world, ids, other=f16)
    a, _ = world.forward([0] + ids[:-1], all_logits=True)
    b, _ = f16.forward([0] + ids[:-1], all_logits=True)
    la = a.astype(np.float64) - np.log(np.exp(a.astype(np.float64)).sum(axis=1, keepdims=True))
    lb = b.astype(np.float64) - np.log(np.exp(b.astype(np.float64)).sum(axis=1, keepdims=True))
    kl = (np.exp(la) * (la - lb)).sum(axis=1)
    assert 0 < r.compare.mean_kl == pytest.approx(kl.mean(), rel=1e-6, abs=1e-12)
    assert r.compare.top1_agreement == pytest.approx((a.argmax(1) == b.argmax(1)).mean())
    assert r.compare.n_positions == len(ids)             # the last token is read by neither model


def lambada_case(name):
    """A LAMBADA document made of a fixture's text, and what the reference logits say about it."""
    ids, ref_logits, _ = reference(name)
    with open(os.path.join(fixture_dir(name), "tokens.json"), encoding="utf-8") as f:
        text = json.load(f)["text"]
    context, word = text.rsplit(" ", 1)
    return ids, ref_logits, context, " " + word


@pytest.mark.parametrize("name", ["tiny-5v2-730K", "random-5v2"])
def test_lambada_matches_the_reference_logits(name, tiny, world, tmp_path):
    model = tiny if name.startswith("tiny") else world
    ids, ref_logits, context, target = lambada_case(name)
    src, dst = model.tokenizer.encode(context), model.tokenizer.encode(target)
    assert src + dst == ids                                 # the reference saw exactly these tokens
    rows = ref_logits[len(src) - 1:len(src) - 1 + len(dst)]
    want_lp = ref_logprobs(rows, dst).sum()
    want_correct = bool((rows.argmax(1) == np.asarray(dst)).all())
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"text": context + target}) + "\n\n" + json.dumps({"text": "a b"}) + "\n",
                    encoding="utf-8")
    docs = evaluate.read_lambada(str(path))
    assert docs[0] == (context, target) and docs[1] == ("a", " b")
    r = evaluate.lambada(model, docs[:1], bos=False)
    assert r.n_docs == 1 and r.n_target_tokens == len(dst)
    assert r.logprob_sum == pytest.approx(want_lp, rel=1e-5)
    assert r.perplexity == pytest.approx(math.exp(-want_lp), rel=1e-4)
    assert r.n_correct == want_correct


def test_lambada_accuracy_counts_greedy_targets(tiny):
    # a target the model gets right and one it gets wrong: take its own greedy continuation as the target
    context = "\"in the beginning there was a small village, and the people lived by the"
    logits, state = tiny.forward(tiny.tokenizer.encode(context))
    greedy = [int(np.argmax(logits))]
    for _ in range(3):
        logits, state = tiny.forward(greedy[-1], state)
        greedy.append(int(np.argmax(logits)))
    right = tiny.tokenizer.decode(greedy)
    wrong = right[:-1] + ("q" if right[-1] != "q" else "z")
    r = evaluate.lambada(tiny, [(context, right), (context, wrong)], bos=False)
    assert r.n_docs == 2 and r.n_correct == 1 and r.accuracy == 0.5
    both = evaluate.lambada(tiny, [(context, right)], other=tiny, bos=False)
    assert both.other_accuracy == 1.0 and both.compare.mean_kl == 0.0


@pytest.mark.parametrize("bad", ['{"txt": "a b"}', "not json", '{"text": "oneword"}', '{"text": 3}'])
def test_bad_lambada_files(tmp_path, bad):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine doc"}\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(rwkv_cpu.ModelFormatError, match=":2:"):
        evaluate.read_lambada(str(path))


def test_argument_errors(tiny, world):
    with pytest.raises(rwkv_cpu.RwkvArgumentError, match="too short"):
        evaluate.perplexity(tiny, "a")
    with pytest.raises(rwkv_cpu.RwkvArgumentError, match="different vocabularies"):
        evaluate.perplexity(tiny, "ab", other=world)


# ---- the command -------------------------------------------------------------------------------------------------
def run(*args):
    return subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "perplexity", *args], capture_output=True,
                          text=True, timeout=300, cwd=os.path.dirname(__file__))


def test_cli_text_and_json(tmp_path, tiny):
    ids, ref_logits, _ = reference("tiny-5v2-730K")
    with open(os.path.join(fixture_dir("tiny-5v2-730K"), "tokens.json"), encoding="utf-8") as f:
        text = json.load(f)["text"]
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    want = math.exp(-ref_logprobs(ref_logits[:-1], ids[1:]).mean())
    p = run(rwkv_cpu.BUNDLED_MODEL, str(path), "--threads", "1")
    assert p.returncode == 0, p.stderr
    assert f"perplexity   {want:.4f}" in p.stdout and "bits/byte" in p.stdout
    assert p.stderr == ""                                   # no bar when stderr is not a terminal
    p = run(rwkv_cpu.BUNDLED_MODEL, str(path), "--json", "--compare", rwkv_cpu.BUNDLED_MODEL, "--limit", "20")
    out = json.loads(p.stdout)
    assert out["predicted"] == 19 and out["mean_kl"] == 0.0 and out["top1_agreement"] == 1.0


def test_cli_lambada_with_compare(tmp_path, converted):
    _, _, context, target = lambada_case("random-5v2")
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps({"text": f"{context} number {i}{target}"}) + "\n" for i in range(5)),
                    encoding="utf-8")
    f32, f16 = converted("random-5v2"), converted("random-5v2", "pth", "f16")
    p = run(f32, str(path), "--compare", f16, "--limit", "3")
    assert p.returncode == 0, p.stderr
    assert "3 documents" in p.stdout and "accuracy" in p.stdout and "mean KL" in p.stdout
    assert "top-1 agree" in p.stdout


def test_cli_errors(tmp_path):
    p = run(rwkv_cpu.BUNDLED_MODEL, str(tmp_path / "missing.txt"))
    assert p.returncode == 1 and "no such file" in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    p = run(rwkv_cpu.BUNDLED_MODEL, str(bad))
    assert p.returncode == 1 and "bad.jsonl:1" in p.stderr


# ---- progress bars ------------------------------------------------------------------------------------------------
class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_draws_only_on_a_terminal():
    out = FakeTTY()
    with Progress(10, "work", "tok", stream=out, min_interval=0) as bar:
        for _ in range(10):
            bar.update(1, info="ppl 1.0")
    text = out.getvalue()
    assert "\r" in text and "100% 10/10 tok" in text and "ppl 1.0" in text and text.endswith("\n")
    quiet = io.StringIO()
    with Progress(10, "work", stream=quiet) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""


def test_converter_progress_lines():
    out = FakeTTY()
    report = line_progress("converting", stream=out)
    for n in range(1, 4):
        report(f"[{n}/3] blocks.{n}.att.key.weight [64, 64] f16  0.1 MB written")
    assert "100% 3/3 tensors" in out.getvalue() and out.getvalue().count("\n") == 1
    plain = io.StringIO()
    line_progress("converting", stream=plain)("[1/3] emb.weight")
    assert plain.getvalue() == "[1/3] emb.weight\n"


def test_cli_draws_a_bar_on_a_terminal(tmp_path):
    import pty
    path = tmp_path / "t.txt"
    path.write_text("The quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "perplexity", rwkv_cpu.BUNDLED_MODEL, str(path),
                            "--threads", "1"], stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300,
                           cwd=os.path.dirname(__file__))
        os.close(slave)
        slave = None
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:          # EIO once the terminal's other side is closed and drained
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0
    text = err.decode("utf-8", "replace")
    assert "perplexity [" in text and "100% 899/899 tok" in text and "\r" in text
