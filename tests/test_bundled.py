"""The tiny model shipped in the package: it is what tools/make_bundled_model.py writes, and it is exact."""
from __future__ import annotations

import os

import numpy as np

import rwkv_cpu
from conftest import fixture_dir, reference


def test_bundled_model_matches_reference():
    ids, ref_logits, _ = reference("tiny-5v2-730K")
    model = rwkv_cpu.Model()
    assert model.path == rwkv_cpu.BUNDLED_MODEL and model.arch == "v5.2"
    logits, _ = model.forward(ids, all_logits=True)
    assert np.abs(logits - ref_logits).max() <= 1e-4
    assert model.tokenizer.kind == "bytes"


def test_bundled_model_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = tmp_path / "tiny.rwkv"
    rwkv_cpu.convert.convert(os.path.join(fixture_dir("tiny-5v2-730K"), "model.pth"), str(out), dtype="f32",
                     progress=False)
    with open(rwkv_cpu.BUNDLED_MODEL, "rb") as f:
        assert f.read() == out.read_bytes(), "run tools/make_bundled_model.py to refresh the bundled model"


def test_bundled_model_generates_text():
    model = rwkv_cpu.Model()
    text = "".join(model.generate("The cat sat on the", max_tokens=40, seed=3))
    assert len(text) > 0
    again = "".join(model.generate("The cat sat on the", max_tokens=40, seed=3))
    assert text == again
