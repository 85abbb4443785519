#!/usr/bin/env python3
"""Rebuild the tiny model bundled in the package (rwkv_cpu/data/tiny-5v2-730K.rwkv).

It is the trained byte-level RWKV-5.2 test model of rwkv.cpp (730K parameters; see tests/data/README.md),
converted in f32 so that `rwkv_cpu.Model()` reproduces the official logits exactly. tests/test_bundled.py
checks that the committed file is what this script writes, byte for byte.

    python tools/make_bundled_model.py
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    from rwkv_cpu.convert import convert
    src = os.path.join(ROOT, "tests", "data", "tiny-5v2-730K", "model.pth")
    out = os.path.join(ROOT, "rwkv_cpu", "data", "tiny-5v2-730K.rwkv")
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")  # reproducible metadata
    convert(src, out, dtype="f32", progress=False)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
