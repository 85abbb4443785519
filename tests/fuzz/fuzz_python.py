"""Fuzz targets for the Python readers of untrusted bytes, and an atheris driver for long runs.

    pickle        the restricted unpickler (rwkv_cpu/convert/pickle_reader.py: load_tensor_refs)
    torch_zip     a .pth / pytorch_model.bin zip archive (torch_zip.open_torch_zip), then every tensor's rows
    safetensors   a .safetensors file (safetensors_reader.open_safetensors), then every tensor's rows
    index_json    a sharded checkpoint's *.index.json (safetensors_reader.read_index)
    state_file    a state file image, through the Python API (Model.state_from_bytes, read_state_header): the C
                  reader, then the metadata JSON
    tokenizer     a model file's embedded tokenizer blob (Tokenizer._from_blob: World via the C library, or a
                  Hugging Face tokenizers JSON)

The property, for every target and every input: the reader returns, or raises an RwkvError subclass that
names the problem; any other exception is a bug. While the unpickler runs, any import at all is a failure too
(it must resolve globals from its allow-list, never by importing or looking a name up in a module), checked by
a guard on builtins.__import__, and what it returns must be plain tensor references.

Long runs (atheris, coverage-guided; `pip install atheris`):
    python tests/fuzz/fuzz_python.py TARGET [atheris/libFuzzer flags] [CORPUS_DIR ...]
e.g. python tests/fuzz/fuzz_python.py pickle -runs=1000000 /tmp/work tests/fuzz/corpus/py_pickle
The test suite runs each target on its seed corpus, the regression inputs and Hypothesis-mutated seeds
(tests/test_fuzz_python.py).
"""
from __future__ import annotations

import builtins
import contextlib
import os
import sys
import tempfile

import numpy as np  # noqa: F401
import tokenizers  # noqa: F401

if __name__ == "__main__":   # coverage instrumentation for the package's modules only (atheris)
    import atheris
    with atheris.instrument_imports(include=["rwkv_cpu"]):
        import rwkv_cpu.convert  # noqa: F401
        import rwkv_cpu.tokenizer  # noqa: F401

import rwkv_cpu
import rwkv_cpu.model
from rwkv_cpu.convert import pickle_reader, safetensors_reader, torch_zip
from rwkv_cpu.errors import RwkvError
from rwkv_cpu.tokenizer import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ["pickle", "torch_zip", "safetensors", "index_json", "state_file", "tokenizer"]
# a RAM-backed directory for the readers that take a path
_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class ImportDuringParse(AssertionError):
    pass


@contextlib.contextmanager
def _no_imports():
    """Fail on any import statement or __import__ call (loading os.system from a pickle would need one)."""
    real = builtins.__import__

    def guard(name, globals=None, locals=None, fromlist=(), level=0):
        raise ImportDuringParse(f"import of {name!r} while unpickling untrusted input")

    builtins.__import__ = guard
    try:
        yield
    finally:
        builtins.__import__ = real


@contextlib.contextmanager
def _as_file(data: bytes, suffix: str):
    fd, path = tempfile.mkstemp(suffix=suffix, dir=_TMP)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        os.unlink(path)


def _read_all(ckpt) -> None:
    """Every tensor's rows, a few at a time, as the converter streams them."""
    for t in ckpt.tensors.values():
        rows = t.shape[0] if t.shape else 1
        for start in range(0, min(rows, 64), 16):
            t.rows(start, min(start + 16, rows))


def target_pickle(data: bytes) -> None:
    with _no_imports():
        refs = pickle_reader.load_tensor_refs(data)
    assert all(type(k) is str and type(v) is pickle_reader.TensorRef for k, v in refs.items()), refs


def target_torch_zip(data: bytes) -> None:
    with _as_file(data, ".pth") as path:
        with torch_zip.open_torch_zip(path) as ckpt:
            _read_all(ckpt)


def target_safetensors(data: bytes) -> None:
    with _as_file(data, ".safetensors") as path:
        with safetensors_reader.open_safetensors(path) as ckpt:
            _read_all(ckpt)


def target_index_json(data: bytes) -> None:
    with tempfile.TemporaryDirectory(dir=_TMP) as d:
        path = os.path.join(d, "model.safetensors.index.json")
        with open(path, "wb") as f:
            f.write(data)
        safetensors_reader.read_index(path)


_MODEL = []


def target_state_file(data: bytes) -> None:
    """Against the bundled model (v5.2, 12 layers, n_embd 64): the seeds are its states."""
    if not _MODEL:
        _MODEL.append(rwkv_cpu.Model(n_threads=1))
    state = _MODEL[0].state_from_bytes(data)
    assert isinstance(state.meta, dict)
    with _as_file(data, ".state") as path:
        head = rwkv_cpu.model.read_state_header(path)
    assert isinstance(head["meta"], dict)


def target_tokenizer(data: bytes) -> None:
    """First byte: the tokenizer kind (0-3, as in the model file); the rest: the blob."""
    if not data:
        return
    tok = Tokenizer._from_blob(data[0] % 4, data[1:])
    ids = tok.encode("Hello, world! \u4f60\u597d")
    tok.decode_bytes(ids)


def run_one(target: str, data: bytes) -> None:
    """Run a target on one input; raise if the reader broke its promise."""
    fn = globals()["target_" + target]
    try:
        fn(data)
    except RwkvError:
        pass


def seeds(target: str):
    """(name, bytes) of the seed corpus and the regression inputs of a target."""
    for sub in ("corpus", "regressions"):
        d = os.path.join(HERE, sub, "py_" + target)
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as f:
                    yield f"{sub}/py_{target}/{name}", f.read()


def main(argv) -> None:
    import atheris

    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [atheris flags] [corpus dirs]")
    target = argv[1]

    def test_one(data: bytes) -> None:
        run_one(target, data)

    atheris.Setup([argv[0]] + argv[2:], test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
