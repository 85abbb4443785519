"""q8 and q4 models against the f32 model: quality targets of issue 3, and agreement across kernel
families and thread counts.

Measures (quant_helpers): mean KL(f32 || quantized) of the next-token distributions over a few hundred
positions of English text, and top-1 agreement. The baseline is plain absmax round-to-nearest 4-bit in the
same blocks of 32 (ggml's Q4_0), applied to the f32 file's matrices and run in f32."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import rwkv_cpu
from conftest import fixture_dir
from quant_helpers import (TEXT, absmax_q4_0, add_outlier_channels, load_blinkdl, mean_kl, rewrite_matrices,
                           top1_agreement, write_safetensors)
from rwkv_cpu.convert import convert
from test_kernels import RUNNABLE


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{(model, kind): path} for model in tiny, outliers (random-5v2 with outlier channels) and kind in
    f32, q8, q4, q4_0 (the baseline)."""
    root = tmp_path_factory.mktemp("quality")
    srcs = {"tiny": os.path.join(fixture_dir("tiny-5v2-730K"), "model.pth")}
    outl = str(root / "outliers.safetensors")
    write_safetensors(outl, add_outlier_channels(load_blinkdl(os.path.join(fixture_dir("random-5v2"), "model.pth"))))
    srcs["outliers"] = outl
    out = {}
    for name, src in srcs.items():
        tok = "world" if name == "outliers" else None
        for kind in ("f32", "q8", "q4"):
            out[(name, kind)] = str(root / f"{name}-{kind}.rwkv")
            convert(src, out[(name, kind)], quant=kind, tokenizer=tok, progress=False)
        out[(name, "q4_0")] = str(root / f"{name}-q4_0.rwkv")
        rewrite_matrices(out[(name, "f32")], out[(name, "q4_0")], absmax_q4_0)
    return out


def logits(path: str, n_threads: int = 2) -> np.ndarray:
    m = rwkv_cpu.Model(path, n_threads=n_threads)
    ids = m.tokenizer.encode(TEXT)
    out, _ = m.forward(ids, all_logits=True)
    return out


@pytest.mark.parametrize("name", ["tiny", "outliers"])
def test_q4_beats_absmax_4bit(models, name):
    # target: q4's mean KL to f32 at most 0.7x plain absmax 4-bit's (measured: tiny 0.671x, outliers 0.033x,
    # where the outlier columns are scaled)
    ref = logits(models[(name, "f32")])
    ours = mean_kl(ref, logits(models[(name, "q4")]))
    base = mean_kl(ref, logits(models[(name, "q4_0")]))
    assert ours <= 0.7 * base, (ours, base)


def test_outlier_model_is_the_same_function(models, tmp_path):
    # add_outlier_channels moves scale between weights and norms without changing what the model computes
    src = os.path.join(fixture_dir("random-5v2"), "model.pth")
    plain = str(tmp_path / "plain.rwkv")
    convert(src, plain, quant="f32", progress=False)
    a, b = logits(plain), logits(models[("outliers", "f32")])
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max()
    # ...and the converter found the outlier columns of every kind of matrix
    names = {t.name for t in rwkv_cpu.Model(models[("outliers", "q4")]).tensors()}
    for m in ("att.key", "att.output", "ffn.key", "ffn.value"):
        assert f"blocks.0.{m}.weight.outlier_cols" in names
    assert "head.weight.outlier_cols" in names and "emb.weight.outlier_cols" not in names


def test_q4_file_within_4_5_bits(models):
    # every q4 matrix of the model with outlier channels, its column scales counted, is <= 4.5 bits per
    # weight, and `rwkv-cpu info` says so per dtype
    from ckpt_helpers import read_rwkv
    _, tensors = read_rwkv(models[("outliers", "q4")])
    n_scaled = 0
    for name, (dtype, shape, raw) in tensors.items():
        if dtype != 9:
            continue
        side = sum(len(tensors[name + s][2]) for s in (".outlier_cols", ".outlier_scales") if name + s in tensors)
        n_scaled += side > 0
        assert 8 * (len(raw) + side) <= 4.5 * shape[0] * shape[1], name
    assert n_scaled >= 4 * 3  # att.key/output, ffn.key/value in each of the 3 layers at least
    info = subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "info", models[("outliers", "q4")]],
                          capture_output=True, text=True, check=True).stdout
    line = next(l for l in info.splitlines() if l.strip().startswith("q4 "))
    bits = float(line.split(",")[-1].split()[0])
    assert 4.25 < bits <= 4.5, line


def test_q8_top1(models):
    # target: q8 top-1 agreement >= 99%. On the trained tiny model: 99.1% (568 of 573 positions; the 5
    # changes are at near-ties, top-2 gaps < 0.07 logits). The random-weight model's logits over a 65536-token
    # vocabulary are full of near-ties (median top-2 gap 0.3), which any 8-bit rounding flips; there the
    # agreement is measured on the positions where f32's choice is decisive (gap > 0.1 logits).
    ref = logits(models[("tiny", "f32")])
    assert top1_agreement(ref, logits(models[("tiny", "q8")])) >= 0.99
    ref = logits(models[("outliers", "f32")])
    got = logits(models[("outliers", "q8")])
    s = np.sort(ref, axis=1)
    decisive = s[:, -1] - s[:, -2] > 0.1
    assert decisive.mean() > 0.7
    assert top1_agreement(ref[decisive], got[decisive]) >= 0.99


@pytest.mark.parametrize("name", ["tiny", "outliers"])
def test_quantized_logits_stay_close(models, name):
    # Bounds from the measured errors with a 2x margin (they are deterministic; a broken kernel or layout
    # moves logits by whole units and KL by orders of magnitude): q8 mean KL tiny 3e-4, outliers 2e-3;
    # q4 tiny 0.05, outliers 0.2.
    ref = logits(models[(name, "f32")])
    bounds = {"tiny": {"q8": 6e-4, "q4": 0.1}, "outliers": {"q8": 4e-3, "q4": 0.4}}[name]
    for kind, bound in bounds.items():
        assert mean_kl(ref, logits(models[(name, kind)])) < bound, kind


@pytest.mark.parametrize("kind", ["f16", "q8", "q4"])
def test_one_and_two_threads_agree(models, converted, kind):
    path = converted("tiny-5v2-730K", "pth", kind) if kind == "f16" else models[("tiny", kind)]
    a, b = logits(path, 1), logits(path, 2)
    # rows are split between threads, never the sum of one row: the results are identical
    np.testing.assert_array_equal(a, b)


_RUN = ("import sys, numpy as np, rwkv_cpu; from quant_helpers import TEXT; m = rwkv_cpu.Model(sys.argv[1]); "
        "l, _ = m.forward(m.tokenizer.encode(TEXT), all_logits=True); np.save(sys.argv[2], l)")


@pytest.mark.parametrize("family", [f for f in RUNNABLE if f != "scalar"])
@pytest.mark.parametrize("kind", ["f32", "q8", "q4"])
def test_model_same_with_every_family(models, tmp_path, family, kind):
    # the whole model under RWKV_CPU_KERNEL=family and =scalar: only the float summation order differs
    # (the integer block sums are exact), about 1e-7 relative per product, grown over 12 layers and 573
    # recurrent steps to ~1e-3 of the logits (f32, q8: measured 1.5e-3 at most); a wrong kernel is off by
    # units. q4 rounds activations to int8: a 1e-7 difference can flip one rounding by one step, which moves
    # the logits by as much as int8 activations do at all, and the recurrent state carries it on (measured:
    # max 0.15 (avx2) and 0.19 (avx512, native), mean 0.015, mean KL ~2e-4 between the two, 1/300 of q4's own
    # KL to f32; the top-1 choice changes only at near-ties, margins up to 0.14 seen), so there the families are
    # compared by KL, and by top-1 where the choice is decisive: a margin of 0.5, which only a logit moved by
    # 0.25 (1.3x the largest difference measured) could flip.
    path = models[("tiny", kind)]
    out = {}
    for fam in ("scalar", family):
        env = dict(os.environ, RWKV_CPU_KERNEL=fam, PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.abspath(__file__))] + sys.path))
        dst = str(tmp_path / f"{fam}.npy")
        subprocess.run([sys.executable, "-c", _RUN, path, dst], env=env, check=True)
        out[fam] = np.load(dst)
    if kind == "q4":
        assert mean_kl(out["scalar"], out[family]) < 1e-3
        s = np.sort(out["scalar"], axis=1)
        decisive = s[:, -1] - s[:, -2] > 0.5
        assert top1_agreement(out["scalar"][decisive], out[family][decisive]) == 1.0
    else:
        assert np.abs(out[family] - out["scalar"]).max() < 1e-2


_RUN_SHORT = ("import sys, numpy as np, rwkv_cpu; from quant_helpers import TEXT; m = rwkv_cpu.Model(sys.argv[1]); "
              "l, _ = m.forward(m.tokenizer.encode(TEXT[:120]), all_logits=True); np.save(sys.argv[2], l)")


@pytest.mark.parametrize("family", [f for f in RUNNABLE if f != "scalar"])
@pytest.mark.parametrize("kind", ["q8", "q4"])
def test_column_scales_same_with_every_family(models, tmp_path, family, kind):
    # the model with outlier channels has column scales in most matrices (the activation is scaled before
    # it is quantized, rc_qx_prepare): every family must agree with the scalar reference, as above
    path = models[("outliers", kind)]
    out = {}
    for fam in ("scalar", family):
        env = dict(os.environ, RWKV_CPU_KERNEL=fam, PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.abspath(__file__))] + sys.path))
        dst = str(tmp_path / f"{fam}.npy")
        subprocess.run([sys.executable, "-c", _RUN_SHORT, path, dst], env=env, check=True)
        out[fam] = np.load(dst)
    assert mean_kl(out["scalar"], out[family]) < 1e-3
    if kind == "q8":
        assert np.abs(out[family] - out["scalar"]).max() < 1e-2


def test_embedding_outlier_columns_are_restored(tmp_path):
    # ln0.weight scales the stored (LN-folded) embedding's columns: three columns 40x larger are stored
    # apart, and an embedding row read for a token must carry their real values (a zeroed column would
    # move the logits by whole units)
    t = load_blinkdl(os.path.join(fixture_dir("tiny-5v2-730K"), "model.pth"))
    t["blocks.0.ln0.weight"][[3, 17, 40]] *= 40
    src = str(tmp_path / "emb-outliers.safetensors")
    write_safetensors(src, t)
    paths = {}
    for kind in ("f32", "q8"):
        paths[kind] = str(tmp_path / f"{kind}.rwkv")
        convert(src, paths[kind], quant=kind, tokenizer="bytes", progress=False)
    names = {x.name for x in rwkv_cpu.Model(paths["q8"]).tensors()}
    assert "emb.weight.outlier_cols" in names
    ref, got = logits(paths["f32"]), logits(paths["q8"])
    assert mean_kl(ref, got) < 2e-3 and np.abs(ref - got).max() < 0.5
