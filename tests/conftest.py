"""Shared fixtures: reference data in tests/data, and .rwkv files converted once per test session."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

# Tests that start `python -m rwkv_cpu.cli ...` or `python -c ...` must import the *installed* package (which
# holds the compiled library), never the source tree's rwkv_cpu/ that `python -m/-c` would find first through the
# working directory when pytest runs from the repository root. So every test runs from a neutral directory.


@pytest.fixture(autouse=True, scope="session")
def _neutral_working_directory(tmp_path_factory):
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(old)


# fixture name -> checkpoint layouts present in tests/data
V52_FIXTURES = ["tiny-5v2-730K", "random-5v2"]
# the other versions' reference fixtures (tests/test_versions.py): fixture name -> model.arch
VERSION_FIXTURES = {"tiny-4v0-660K": "v4", "random-4v0": "v4", "random-5v0": "v5.0", "random-5v1": "v5.1",
                    "random-6v0": "v6", "random-7v0": "v7"}
LAYOUTS = {"pth": "model.pth", "hf": "hf"}


def fixture_dir(name: str) -> str:
    return os.path.join(DATA, name)


def reference(name: str):
    """(token ids, logits [T, V], final state dict) of a fixture, from the official implementation."""
    d = fixture_dir(name)
    with open(os.path.join(d, "tokens.json"), encoding="utf-8") as f:
        ids = json.load(f)["ids"]
    logits = np.load(os.path.join(d, "logits.npy"))
    state = dict(np.load(os.path.join(d, "state.npz")))
    return ids, logits, state


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """converted(name, layout, dtype) -> path of a .rwkv made from tests/data (cached for the session)."""
    from rwkv_cpu.convert import convert
    cache = {}
    root = tmp_path_factory.mktemp("converted")

    def get(name: str, layout: str = "pth", dtype: str = "f32") -> str:  # dtype: f32 f16 q8 q4
        key = (name, layout, dtype)
        if key not in cache:
            out = str(root / f"{name}-{layout}-{dtype}.rwkv")
            convert(os.path.join(fixture_dir(name), LAYOUTS[layout]), out, dtype=dtype, progress=False)
            cache[key] = out
        return cache[key]

    return get
