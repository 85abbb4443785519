"""The Python readers of untrusted bytes under fuzzing (tests/fuzz/fuzz_python.py has the targets and the
atheris driver for long runs; docs/SECURITY.md has the figures). Here, in every test run: each target on its
seed corpus and on the regression inputs found by fuzzing, then on a fixed number of Hypothesis-mutated seeds
(byte flips, truncations, insertions, splices) and random bytes. A target fails if a reader raises anything
but an RwkvError naming the problem, or if the unpickler imports anything."""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))
import fuzz_python as fp  # noqa: E402

SEEDS = {t: list(fp.seeds(t)) for t in fp.TARGETS}
# small seeds only for mutation (a mutated 28 KB pickle is slow to interpret in pure Python)
MUTATION_SEEDS = {t: [d for n, d in SEEDS[t] if n.startswith("corpus/") and len(d) <= (8192 if t == "pickle" else 65536)]
                  for t in fp.TARGETS}
FUZZ_SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("target,name", [(t, n) for t in fp.TARGETS for n, _ in SEEDS[t]])
def test_seeds_and_regressions(target, name):
    data = dict(SEEDS[target])[name]
    fp.run_one(target, data)


def test_every_target_has_seeds():
    for t in fp.TARGETS:
        assert MUTATION_SEEDS[t], f"no small seed for {t}"


@st.composite
def mutated(draw, target):
    data = bytearray(draw(st.sampled_from(MUTATION_SEEDS[target])))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "splice", "int"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, ord("{"), ord("\""), ord("."), ord("(")]))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif kind == "splice":
            other = draw(st.sampled_from(MUTATION_SEEDS[target]))
            a = draw(st.integers(0, len(other)))
            data[pos:pos] = other[a:a + draw(st.integers(1, 64))]
        elif kind == "int" and len(data) >= pos + 4:   # an interesting little-endian integer
            v = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 31, 64, 4096]))
            data[pos:pos + 4] = v.to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize("target", fp.TARGETS)
def test_mutated_seeds(target):
    @FUZZ_SETTINGS
    @given(mutated(target))
    def check(data):
        fp.run_one(target, data)

    check()


@pytest.mark.parametrize("target", fp.TARGETS)
def test_random_bytes(target):
    @settings(FUZZ_SETTINGS, max_examples=60)
    @given(st.binary(max_size=512))
    def check(data):
        fp.run_one(target, data)

    check()


def test_unpickler_import_guard_works():
    """The guard the pickle target relies on does catch an import (a reader that imported would fail)."""
    with pytest.raises(fp.ImportDuringParse):
        with fp._no_imports():
            import json.decoder  # noqa: F401  (any import statement, even of a loaded module)
