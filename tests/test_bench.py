"""The benchmark tools (rwkv_cpu/bench): the random-model maker, the read-bandwidth measurement, `bench run` and
`bench quality` end to end on tiny models (fields and their consistency, never timings)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np
import pytest

import rwkv_cpu
from rwkv_cpu._ffi import ffi, lib
from rwkv_cpu.bench.maker import make_checkpoint, outlier_plan, to_bf16_bits
from rwkv_cpu.bench.weights import fla_tensors, hf_name, make_weights, preset_dims
from rwkv_cpu.convert import convert
from rwkv_cpu.errors import RwkvArgumentError

from ckpt_helpers import read_safetensors, safetensors_array
from conftest import DATA, fixture_dir

VERSIONS = ["v4", "v5.2", "v6", "v7"]


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _make(tmp_path, name, version, **kw):
    out = str(tmp_path / name)
    make_checkpoint(out, version, preset_dims("tiny", version), **kw)
    return out


# ---- the maker ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_maker_is_deterministic_and_converts_and_runs(tmp_path, version):
    a = _make(tmp_path, "a", version, seed=5)
    b = _make(tmp_path, "b", version, seed=5)
    c = _make(tmp_path, "c", version, seed=6)
    st = lambda d: os.path.join(d, "model.safetensors")  # noqa: E731
    assert _sha(st(a)) == _sha(st(b))
    assert _sha(st(a)) != _sha(st(c))
    header, _ = read_safetensors(st(a))
    assert {e["dtype"] for k, e in header.items() if k != "__metadata__"} == {"BF16"}
    summary = convert(a, str(tmp_path / "a.rwkv"), quant="f32", progress=False)
    assert summary["arch"] == version
    assert summary["naming"] == ("fla" if version == "v7" else "hf")
    model = rwkv_cpu.Model(str(tmp_path / "a.rwkv"), n_threads=1)
    d = preset_dims("tiny", version)
    assert (model.n_layer, model.n_embd, model.n_ffn, model.n_vocab) == (d["L"], d["C"], d["F"], d["V"])
    logits, _ = model.forward(list(b"The sea was calm."), all_logits=True)
    assert np.isfinite(logits).all()
    assert 0.5 < logits.std() < 20                       # trained-like magnitudes: neither flat nor exploding
    assert len(set(logits.argmax(axis=1).tolist())) > 3  # the input matters


@pytest.mark.parametrize("version", ["v5.2", "v7"])
def test_layouts_hold_the_same_model(tmp_path, version):
    """hf (HF / fla names), blinkdl (.safetensors) and pth (torch zip by hand) convert to the same .rwkv tensors."""
    from ckpt_helpers import read_rwkv
    srcs = {"hf": _make(tmp_path, "hf", version, seed=4)}
    for layout, file in (("blinkdl", "model.safetensors"), ("pth", "model.pth")):
        srcs[layout] = os.path.join(_make(tmp_path, layout, version, seed=4, layout=layout), file)
    tensors = {}
    for layout, src in srcs.items():
        s = convert(src, str(tmp_path / f"{layout}.rwkv"), quant="f16", progress=False)
        assert s["source_format"] == ("pth" if layout == "pth" else "safetensors" if layout == "blinkdl"
                                      else s["source_format"])
        tensors[layout] = read_rwkv(str(tmp_path / f"{layout}.rwkv"))[1]
    assert tensors["hf"] == tensors["blinkdl"] == tensors["pth"]


def test_maker_chunking_does_not_change_values(tmp_path, monkeypatch):
    import rwkv_cpu.bench.maker as maker
    a = _make(tmp_path, "a", "v5.2", seed=1)
    monkeypatch.setattr(maker, "CHUNK_ELEMENTS", 1000)   # many chunks per matrix, ragged last chunk
    b = _make(tmp_path, "b", "v5.2", seed=1)
    # the per-tensor generator is chunked by rows: a different chunk size draws the same stream
    assert _sha(os.path.join(a, "model.safetensors")) == _sha(os.path.join(b, "model.safetensors"))


@pytest.mark.parametrize("version", VERSIONS)
def test_outlier_channels_keep_the_function_and_grow_the_columns(tmp_path, version):
    plain = _make(tmp_path, "plain", version, seed=3, dtype="f32")
    outl = _make(tmp_path, "outl", version, seed=3, dtype="f32", outliers=3)
    logits = []
    for d in (plain, outl):
        convert(d, d + ".rwkv", quant="f32", progress=False)
        logits.append(rwkv_cpu.Model(d + ".rwkv", n_threads=1).forward(list(b"In the beginning"), all_logits=True)[0])
    assert np.abs(logits[0] - logits[1]).max() < 1e-4 * np.abs(logits[0]).max()
    # the head's columns for the outlier channels are 20-50x the others
    h0, d0 = read_safetensors(os.path.join(plain, "model.safetensors"))
    h1, d1 = read_safetensors(os.path.join(outl, "model.safetensors"))
    head = "lm_head.weight" if version == "v7" else "head.weight"
    ratio = np.abs(safetensors_array(h1, d1, head)).max(0) / np.abs(safetensors_array(h0, d0, head)).max(0)
    big = np.sort(ratio)[-3:]
    assert (big > 19.9).all() and (big < 50.1).all()
    assert np.allclose(np.sort(ratio)[:-3], 1.0)
    plan = outlier_plan(version, preset_dims("tiny", version), 3, 3)
    assert len(plan["head.weight"][0][1]) == 3


def test_make_weights_is_what_the_reference_fixtures_hold():
    """tools/make_reference.py draws from rwkv_cpu.bench.weights: the stored fixtures are its values, in bf16."""
    manifest = json.load(open(os.path.join(DATA, "manifest.json")))
    for name, version in (("random-6v0", "v6"), ("random-7v0", "v7"), ("random-5v1", "v5.1")):
        e = manifest["fixtures"][name]
        dm = e["dims"]
        d = dict(L=dm["n_layer"], C=dm["n_embd"], V=dm["n_vocab"], F=dm["n_ffn"], H=dm["n_head"], N=dm["head_size"],
                 **{k: v for k, v in dm.items() if k.startswith("D")})
        w = {k: (to_bf16_bits(v).astype(np.uint32) << 16).view(np.float32) for k, v in
             make_weights(version, d, e["seed"]).items()}
        hf = fla_tensors(w) if version == "v7" else {hf_name(k, version): v for k, v in w.items()}
        header, data = read_safetensors(os.path.join(fixture_dir(name), "hf", "model.safetensors"))
        assert set(hf) == set(header) - {"__metadata__"}
        for k, v in hf.items():
            assert np.array_equal(safetensors_array(header, data, k), v.astype(np.float64)), (name, k)


def test_cli_make(tmp_path):
    out = tmp_path / "m"
    r = subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "bench", "make", "tiny", str(out), "--version", "v6",
                        "--seed", "2", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "RWKV v6, 2 layers, width 64" in r.stdout
    recipe = json.load(open(out / "bench_model.json"))
    assert recipe["version"] == "v6" and recipe["seed"] == 2 and recipe["dtype"] == "bf16"
    assert json.load(open(out / "config.json"))["model_type"] == "rwkv6"


# ---- read bandwidth ----------------------------------------------------------------------------------------
def test_measure_read_bandwidth():
    model = rwkv_cpu.Model(n_threads=2)
    out = ffi.new("double *")
    assert lib.rwkv_measure_read_bandwidth(model._handle, 8 << 20, 3, out) == 0
    assert 1e8 < out[0] < 1e13   # 0.1 GB/s .. 10 TB/s
    from rwkv_cpu._ffi import check
    for nbytes, reps in ((100, 3), (8 << 20, 0), (8 << 20, 5000)):
        with pytest.raises(RwkvArgumentError):
            check(lib.rwkv_measure_read_bandwidth(model._handle, nbytes, reps, out))
    with pytest.raises(RwkvArgumentError):
        check(lib.rwkv_measure_read_bandwidth(ffi.NULL, 8 << 20, 3, out))


@pytest.mark.parametrize("threads", [1, 3])
def test_measure_weights_bandwidth(threads):
    model = rwkv_cpu.Model(n_threads=threads)
    out, nread = ffi.new("double *"), ffi.new("uint64_t *")
    assert lib.rwkv_measure_weights_bandwidth(model._handle, 3, out, nread) == 0
    assert 1e8 < out[0] < 1e13
    # one pass reads every tensor but the embedding, in whole 8-byte words: at most 7 bytes lost at each end of
    # the two ranges, at most 63 bytes of 64-byte alignment padding gained per tensor
    tensors = list(model.tensors())
    want = sum(t.nbytes for t in tensors if t.name != "emb.weight")
    assert want - 28 <= nread[0] <= want + 64 * len(tensors) and nread[0] % 8 == 0
    assert lib.rwkv_measure_weights_bandwidth(model._handle, 1, out, ffi.NULL) == 0 and out[0] > 1e8
    from rwkv_cpu._ffi import check
    for reps in (0, 5000):
        with pytest.raises(RwkvArgumentError):
            check(lib.rwkv_measure_weights_bandwidth(model._handle, reps, out, nread))
    with pytest.raises(RwkvArgumentError):
        check(lib.rwkv_measure_weights_bandwidth(ffi.NULL, 3, out, nread))


# ---- bench run, bench quality ------------------------------------------------------------------------------
def _cli(*args, cwd=None):
    """`rwkv-cpu bench ARGS`; from another directory (cwd) through the installed console script, as a user would."""
    cmd = [sys.executable, "-m", "rwkv_cpu.cli"]
    if cwd is not None:
        script = os.path.join(os.path.dirname(sys.executable), "rwkv-cpu")
        cmd = [script] if os.path.exists(script) else [shutil.which("rwkv-cpu")]
    r = subprocess.run(cmd + ["bench", *args], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_bench_run_end_to_end(tmp_path):
    model = rwkv_cpu.Model()
    out = json.loads(_cli("run", model.path, "--threads", "1", "--tokens", "4", "--runs", "2", "--warmup", "1",
                          "--prefill", "8 16", "--batch", "1 3", "--batch-steps", "2", "--bw-bytes", str(16 << 20),
                          "--json"))
    (r,) = out["results"]
    assert r["arch"] == "v5.2" and r["threads"] == 1 and r["n_params"] == model.n_params
    assert len(r["decode_ms_runs"]) == 2 and r["decode_ms"] > 0
    assert len(r["bandwidth_gb_s_runs"]) == 2 and r["bandwidth_gb_s"] > 0
    b = r["bytes_per_token"]
    tensors = model.tensors()
    emb = next(t for t in tensors if t.name == "emb.weight")
    assert b["total"] == sum(t.nbytes for t in tensors) - emb.nbytes + emb.nbytes // emb.shape[0] + model.state_size * 4
    assert r["roofline_ratio"] == pytest.approx(r["decode_ms"] / (b["total"] / (r["bandwidth_gb_s"] * 1e9) * 1e3))
    assert len(r["roofline_ratio_runs"]) == 2 and all(x > 0 for x in r["roofline_ratio_runs"])
    own = r["weights_bandwidth_gb_s_runs"]
    assert len(own) == 2 and all(x > 0 for x in own) and r["weights_bandwidth_gb_s"] == pytest.approx(statistics.median(own))
    assert r["roofline_ratio_weights_runs"] == pytest.approx(
        [t * 1e-3 / (b["total"] / (g * 1e9)) for t, g in zip(r["decode_ms_runs"], own)])
    assert r["roofline_ratio_weights"] == pytest.approx(statistics.median(r["roofline_ratio_weights_runs"]))
    assert r["peak_rss_bytes"] > r["file_bytes"] and r["first_token_s"] >= r["load_s"] > 0
    assert [p["tokens"] for p in r["prefill"]] == [8, 16] and all(p["tok_s"] > 0 for p in r["prefill"])
    assert [p["batch"] for p in r["batch"]] == [1, 3] and all(p["tok_s"] > 0 for p in r["batch"])
    # from a source checkout's root too (where ./rwkv_cpu has no compiled library): the worker process must
    # import the package the command itself runs from
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    md = _cli("run", model.path, "--threads", "1", "--tokens", "2", "--runs", "1", "--prefill", "none",
              "--batch", "2", "--bw-bytes", str(16 << 20), "--markdown", cwd=root)
    assert "| roofline ratio |" in md and "| ratio vs weights' |" in md and "batch 2 tok/s" in md and "prefill" not in md.split("\n")[-3]


def test_bench_quality_end_to_end(tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("The old lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the "
                    "wick, polished the great lens, and watched the ships pass beyond the rocks. " * 3)
    out = json.loads(_cli("quality", os.path.join(fixture_dir("tiny-5v2-730K"), "model.pth"), "--text", str(text), "--workdir",
                          str(tmp_path / "w"), "--threads", "1", "--json"))
    rows = {x["type"]: x for x in out["results"]}
    assert set(rows) == {"f16", "q8", "q4"} and out["n_tokens"] == len(text.read_text().encode())
    assert rows["f16"]["mean_kl"] < rows["q8"]["mean_kl"] < rows["q4"]["mean_kl"] < 0.5
    assert rows["f16"]["top1_agreement"] > 0.97 and 0 < rows["q4"]["top1_agreement"] <= 1
    assert rows["q4"]["file_bytes"] < rows["q8"]["file_bytes"] < rows["f16"]["file_bytes"]
    assert abs(np.log(rows["f16"]["perplexity"] / out["reference_perplexity"])) < 1e-3
    # an f32 .rwkv with --compare: the same figures for the same files
    w = tmp_path / "w"
    ref = next(str(w / f) for f in os.listdir(w) if f.endswith("-f32.rwkv"))
    q4 = next(str(w / f) for f in os.listdir(w) if f.endswith("-q4.rwkv"))
    again = json.loads(_cli("quality", ref, "--compare", q4, "--text", str(text), "--threads", "1", "--json"))
    assert again["results"][0]["mean_kl"] == pytest.approx(rows["q4"]["mean_kl"])
