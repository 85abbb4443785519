"""The rwkv-cpu command line, run as a user runs it (a subprocess of the installed entry point)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import fixture_dir


def run(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", *args], capture_output=True, text=True,
                       cwd=os.path.dirname(__file__), timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def test_generate_with_bundled_model():
    p = run("generate", "The cat sat on the", "-n", "30", "--seed", "1")
    assert p.stdout.startswith("The cat sat on the") and len(p.stdout) > len("The cat sat on the") + 5
    assert "tok/s" in p.stderr


def test_generate_no_arguments_uses_defaults():
    p = run("generate", "-n", "5", "--seed", "1")
    assert "scientists" in p.stdout


def test_generate_greedy_is_deterministic():
    a = run("generate", "Hello", "-n", "20", "-t", "0").stdout
    b = run("generate", "Hello", "-n", "20", "-t", "0").stdout
    assert a == b


def test_generate_with_model_file(converted):
    path = converted("random-5v2")
    p = run("generate", path, "User: hi", "-n", "8", "--seed", "2")
    assert p.stdout.startswith("User: hi")
    p = run("generate", path, "-n", "3", "--seed", "2")  # one argument that is a file: the model
    assert "scientists" in p.stdout


@pytest.mark.parametrize("args, message", [
    (["generate", "-t", "-1"], "temperature"),
    (["generate", "--top-p", "0"], "top_p"),
    (["generate", "-m", "/nonexistent.rwkv", "hi"], "cannot open"),
    (["info", "/nonexistent.rwkv"], "cannot open"),
])
def test_errors_are_clear(args, message):
    p = run(*args, check=False)
    assert p.returncode != 0
    assert message in p.stderr and "Traceback" not in p.stderr


def test_info(converted):
    p = run("info", converted("random-5v2", "pth", "f16"), "--tensors")
    for needle in ("RWKV v5.2", "n_layer 3", "n_vocab 65536", "world", "f16", "blocks.2.ffn.value.weight",
                   "kernels"):
        assert needle in p.stdout


def test_convert(tmp_path):
    out = tmp_path / "m.rwkv"
    p = run("convert", os.path.join(fixture_dir("tiny-5v2-730K"), "hf"), str(out), "--dtype", "f32")
    assert out.exists() and p.returncode == 0
    assert "RWKV v5.2" in run("info", str(out)).stdout
    run("convert", os.path.join(fixture_dir("tiny-4v0-660K"), "model.pth"), str(tmp_path / "v4.rwkv"))
    assert "RWKV v4" in run("info", str(tmp_path / "v4.rwkv")).stdout
    p = run("convert", os.path.join(fixture_dir("tiny-4v0-660K"), "tokens.json"), str(tmp_path / "bad.rwkv"),
            check=False)
    assert p.returncode != 0 and "error" in p.stderr and not (tmp_path / "bad.rwkv").exists()


def test_cli_convert_help_and_leading_options():
    p = run("convert", "--help")
    assert "Hugging Face Hub repository id" in p.stdout
    p = run("generate", "--bogus", check=False)
    assert p.returncode == 2 and "unrecognized arguments: --bogus" in p.stderr
