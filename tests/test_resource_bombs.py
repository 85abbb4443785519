"""Resource bombs are refused quickly and in bounded memory (docs/SECURITY.md): a file that claims enormous
sizes gets an error naming the problem, never an allocation of what it claims. Every case runs in one
subprocess whose address space is capped at what it had after start-up plus BUDGET: a reader that tried to
allocate what a file claims would get an out-of-memory error (or die) instead of the expected message."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

BUDGET = 768 << 20   # bytes of address space the cases may add (the library, numpy, a few buffers)

RUNNER = textwrap.dedent(r"""
    import io, json, os, resource, struct, sys, tempfile, zipfile, zlib
    import numpy as np
    import rwkv_cpu
    from rwkv_cpu._ffi import ffi, lib, last_error
    from rwkv_cpu.convert.pickle_reader import load_tensor_refs
    from rwkv_cpu.convert.torch_zip import open_torch_zip
    from rwkv_cpu.convert.safetensors_reader import open_safetensors
    from rwkv_cpu.errors import RwkvError

    model_raw = open(sys.argv[2], "rb").read()
    tmp = tempfile.mkdtemp()

    def vm_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    cap = vm_bytes() + int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def patched(raw, *edits):
        b = bytearray(raw)
        for off, fmt, v in edits:
            struct.pack_into(fmt, b, off, v)
        return bytes(b)

    def load_model(raw):
        p = os.path.join(tmp, "m.rwkv")
        open(p, "wb").write(raw)
        rwkv_cpu.Model(p, n_threads=1)

    def world(text):
        out = ffi.new("rwkv_tokenizer **")
        if lib.rwkv_tokenizer_new_world(ffi.from_buffer(text), len(text), out) != 0:
            raise RwkvError(last_error())
        lib.rwkv_tokenizer_free(out[0])

    def zip_file(name, data, declared=None, method=zipfile.ZIP_DEFLATED):
        p = os.path.join(tmp, name)
        with zipfile.ZipFile(p, "w", compression=method) as zf:
            zf.writestr("archive/byteorder", b"little")
            zf.writestr("archive/data.pkl", data)
        if declared is not None:   # lie about the uncompressed size in the central directory
            raw = bytearray(open(p, "rb").read())
            at = raw.find(b"archive/data.pkl", raw.find(b"PK\x01\x02")) - 46
            struct.pack_into("<I", raw, at + 24, declared)
            open(p, "wb").write(bytes(raw))
        return p

    def safetensors(header_bytes, n=None):
        p = os.path.join(tmp, "x.safetensors")
        open(p, "wb").write(struct.pack("<Q", len(header_bytes) if n is None else n) + header_bytes)
        return p

    vocab_bytes = b"".join(b"%d b'\\x%02x' 1\n" % (i + 1, i) for i in range(256))
    CASES = {
        # .rwkv headers (offsets: docs/FILE_FORMAT.md)
        "model: 4096 layers of width 2^20": lambda: load_model(patched(model_raw, (20, "<I", 4096), (24, "<I", 1 << 20))),
        "model: 2^24-token vocabulary": lambda: load_model(patched(model_raw, (44, "<I", 1 << 24))),
        "model: a million tensors": lambda: load_model(patched(model_raw, (48, "<I", 1 << 20))),
        "model: data region of 2^63 bytes": lambda: load_model(patched(model_raw, (104, "<Q", 1 << 63))),
        "model: head_size 256K": lambda: load_model(patched(model_raw, (28, "<I", 1 << 18), (32, "<I", 1), (36, "<I", 1 << 18))),
        "model: tensor of 2^32 x 2^32": lambda: load_model(patched(model_raw, (256 + 72, "<Q", 1 << 32), (256 + 80, "<Q", 1 << 32))),
        # World vocab texts
        "vocab: one 12 MiB line": lambda: world(b"1 '" + b"a" * (12 << 20)),
        "vocab: 17 MiB of text": lambda: world(vocab_bytes * ((17 << 20) // len(vocab_bytes) + 1)),
        # pickles
        "pickle: 10^6 nested MARKs": lambda: load_tensor_refs(b"\x80\x02" + b"(" * 1000000 + b"."),
        "pickle: memo of 2^21 entries": lambda: load_tensor_refs(b"\x80\x02N" + b"".join(b"r" + struct.pack("<I", i) for i in range(1 << 21)) + b"."),
        "pickle: a 4 GiB string": lambda: load_tensor_refs(b"\x80\x02X" + struct.pack("<I", 0xFFFFFFFF) + b"abc."),
        # zip entries
        "zip: declared size 4 GiB": lambda: open_torch_zip(zip_file("a.pth", b"\x80\x02}.", declared=0xFFFFFFF0)),
        "zip: 256 MiB of zeros declared as 16 bytes": lambda: open_torch_zip(zip_file("b.pth", bytes(256 << 20), declared=16)),
        # safetensors headers
        "safetensors: header length 2^63": lambda: open_safetensors(safetensors(b"{}", n=1 << 63)),
        "safetensors: JSON nested 10^6 deep": lambda: open_safetensors(safetensors(b"[" * 1000000 + b"]" * 1000000)),
    }
    results = {}
    for name, fn in CASES.items():
        try:
            fn()
            results[name] = ["accepted", ""]
        except RwkvError as e:
            results[name] = [type(e).__name__, str(e)[:300]]
        except MemoryError:
            results[name] = ["MemoryError", ""]
    print(json.dumps(results))
""")

EXPECTED = {  # case -> a regex the error message must match
    "model: 4096 layers of width 2^20": "out of range|runs past|tensor",
    "model: 2^24-token vocabulary": "emb.weight has shape",
    "model: a million tensors": "tensor table .* runs past the end",
    "model: data region of 2^63 bytes": "tensor data .* runs past the end",
    "model: head_size 256K": "head_size 262144 is above the limit",
    "model: tensor of 2^32 x 2^32": "bytes stored|overflows|dimension",
    "vocab: one 12 MiB line": "line longer than 8192 bytes",
    "vocab: 17 MiB of text": "above the limit 16777216",
    "pickle: 10^6 nested MARKs": "nesting deeper",
    "pickle: memo of 2^21 entries": "memo exceeds",
    "pickle: a 4 GiB string": "exceeds the .*-byte limit",
    "zip: declared size 4 GiB": "over the .*-byte limit",
    "zip: 256 MiB of zeros declared as 16 bytes": "declared|CRC|damaged",
    "safetensors: header length 2^63": "exceeds the .*-byte limit",
    "safetensors: JSON nested 10^6 deep": "not valid UTF-8 JSON|not a JSON object|header",
}


@pytest.fixture(scope="module")
def results(converted):
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("an address-space cap cannot be combined with AddressSanitizer's shadow memory")
    r = subprocess.run([sys.executable, "-c", RUNNER, str(BUDGET), converted("tiny-5v2-730K", dtype="f16")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_refused_in_bounded_memory(results, case):
    import re
    kind, msg = results[case]
    assert kind not in ("accepted", "MemoryError") and "out of memory" not in msg, (kind, msg)
    assert re.search(EXPECTED[case], msg), (kind, msg)
