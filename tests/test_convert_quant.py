"""The converter's --quant / --keep: which type every tensor gets, file sizes, overrides, fallbacks."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import rwkv_cpu
from ckpt_helpers import TINY, read_rwkv
from rwkv_cpu.convert import convert
from rwkv_cpu.convert.quantize import (DTYPE_F16, DTYPE_F32, DTYPE_Q4, DTYPE_Q8, bits_per_weight, choose_dtype,
                                       max_outlier_columns, parse_keep, quantize_rows, row_bytes)

SRC = os.path.join(TINY, "model.pth")


# the tiny model's matrices are [*, 64] (q4: one super-block of 2 blocks, exactly 4.5 bits) and [64, 256]
# (one whole super-block: 4.3125 bits)
@pytest.mark.parametrize("quant,dtype,bits", [("q8", DTYPE_Q8, {64: 8.5, 256: 8.5}),
                                              ("q4", DTYPE_Q4, {64: 4.5, 256: 4.3125})])
def test_every_matrix_quantized(tmp_path, quant, dtype, bits):
    out = str(tmp_path / "m.rwkv")
    convert(SRC, out, quant=quant, progress=False)
    head, tensors = read_rwkv(out)
    assert head["metadata"]["dtype"] == quant
    n_mat = 0
    for name, (dt, shape, raw) in tensors.items():
        if len(shape) == 2 and name.endswith(".weight"):  # every matrix, emb and head included
            assert dt == dtype, name
            assert len(raw) == shape[0] * row_bytes(dtype, shape[1])
            assert len(raw) * 8 == bits[shape[1]] * shape[0] * shape[1]
            n_mat += 1
        else:
            assert dt == DTYPE_F32, name
    assert n_mat == 2 + 12 * 8
    m = rwkv_cpu.Model(out)
    assert {t.dtype for t in m.tensors() if t.name == "head.weight"} == {quant}


def test_keep_overrides(tmp_path):
    out = str(tmp_path / "m.rwkv")
    convert(SRC, out, quant="q4", keep=["f16:head", "q8:blocks.1*.ffn.*"], progress=False)
    _, t = read_rwkv(out)
    assert t["head.weight"][0] == DTYPE_F16 and t["emb.weight"][0] == DTYPE_Q4
    assert t["blocks.10.ffn.key.weight"][0] == DTYPE_Q8 and t["blocks.1.ffn.value.weight"][0] == DTYPE_Q8
    assert t["blocks.2.ffn.key.weight"][0] == DTYPE_Q4
    assert t["blocks.1.ln2.weight"][0] == DTYPE_F32  # vectors stay f32 whatever the pattern says
    rwkv_cpu.Model(out).forward([1, 2, 3])


def test_keep_errors(tmp_path):
    with pytest.raises(rwkv_cpu.RwkvError, match="matches no tensor"):
        convert(SRC, str(tmp_path / "a.rwkv"), quant="q4", keep=["f16:haed"], progress=False)
    with pytest.raises(rwkv_cpu.RwkvError, match="DTYPE:PATTERN"):
        convert(SRC, str(tmp_path / "a.rwkv"), quant="q4", keep=["head"], progress=False)
    with pytest.raises(rwkv_cpu.RwkvError, match="quant must be"):
        convert(SRC, str(tmp_path / "a.rwkv"), quant="q3", progress=False)
    assert not os.listdir(tmp_path)


def test_fallback_rules():
    keep = parse_keep(["q4:x.*"])
    assert choose_dtype("a.weight", (64, 100), True, True, DTYPE_Q4, ()) == (
        DTYPE_F16, "input dimension 100 is not a multiple of 32: f16")
    assert choose_dtype("a.weight", (64, 64), True, False, DTYPE_Q4, ())[0] == DTYPE_F32  # LoRA: not quantizable
    assert choose_dtype("a.w", (64,), False, True, DTYPE_Q4, ())[0] == DTYPE_F32
    assert choose_dtype("x.y", (64, 64), True, True, DTYPE_F16, keep) == (DTYPE_Q4, "--keep q4:x.*")


def test_cli_quant_and_dtype_alias(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "convert", SRC, *a], capture_output=True,
                                    text=True)
    r = run(str(tmp_path / "a.rwkv"), "--quant", "q8", "--keep", "f32:emb", "--quiet")
    assert r.returncode == 0, r.stderr
    _, t = read_rwkv(str(tmp_path / "a.rwkv"))
    assert t["emb.weight"][0] == DTYPE_F32 and t["head.weight"][0] == DTYPE_Q8
    assert run(str(tmp_path / "b.rwkv"), "--dtype", "f32", "--quiet").returncode == 0
    r = run(str(tmp_path / "c.rwkv"), "--dtype", "f32", "--quant", "q4")
    assert r.returncode != 0 and "older name" in r.stderr
    info = subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "info", str(tmp_path / "a.rwkv")],
                          capture_output=True, text=True, check=True).stdout
    assert "q8" in info


def _entry(blob: bytes, name: str) -> int:
    import struct
    n = struct.unpack_from("<I", blob, 48)[0]
    for i in range(n):
        off = 256 + 128 * i
        if blob[off:off + 64].rstrip(b"\0").decode() == name:
            return off
    raise KeyError(name)


def test_loader_checks_quantized_tensors(tmp_path):
    import struct

    import numpy as np

    from quant_helpers import load_blinkdl, write_safetensors
    t = load_blinkdl(SRC)
    t["blocks.0.ln0.weight"][[3, 17]] *= 40  # outlier columns in the stored embedding
    src = str(tmp_path / "m.safetensors")
    write_safetensors(src, t)
    out = str(tmp_path / "m.rwkv")
    # the embedding (n_embd 64: q4 has no room for column scales there) in q8, the rest q4
    convert(src, out, quant="q4", keep=["q8:emb"], tokenizer="bytes", progress=False)
    good = open(out, "rb").read()
    rwkv_cpu.Model(out).forward([1])

    def load(blob, match, exc=rwkv_cpu.ModelFormatError):
        p = tmp_path / "bad.rwkv"
        p.write_bytes(bytes(blob))
        with pytest.raises(exc, match=match):
            rwkv_cpu.Model(str(p)).forward([1])

    # a companion without its pair
    b = bytearray(good)
    e = _entry(good, "emb.weight.outlier_scales")
    b[e:e + 64] = b"emb.weight.outlier_scalez".ljust(64, b"\0")
    load(b, "emb.weight.outlier_scales is missing")
    # column indices that are not increasing integers
    e = _entry(good, "emb.weight.outlier_cols")
    data = struct.unpack_from("<Q", good, 96)[0] + struct.unpack_from("<Q", good, e + 104)[0]
    b = bytearray(good)
    struct.pack_into("<f", b, data, 2.5)
    load(b, "not a column index")
    # a scale that is not a finite positive number
    e = _entry(good, "emb.weight.outlier_scales")
    data = struct.unpack_from("<Q", good, 96)[0] + struct.unpack_from("<Q", good, e + 104)[0]
    for bad in (0.0, -2.0, float("inf"), float("nan")):
        b = bytearray(good)
        struct.pack_into("<f", b, data, bad)
        load(b, "not a finite positive scale")
    # a q4 matrix whose input dimension is not a multiple of 32 (shape patched, size kept)
    e = _entry(good, "head.weight")
    b = bytearray(good)
    struct.pack_into("<QQ", b, e + 72, 128, 128)
    load(b, "expected")
    struct.pack_into("<QQ", b, e + 72, 256 * 2, 32)
    load(b, "at least 64")
    struct.pack_into("<QQ", b, e + 72, 256, 63)
    load(b, "multiple of 32")
    assert np.isfinite(rwkv_cpu.Model(out).forward([1])[0]).all()


# shapes q4 accepts, awkward ones first: one row, the fewest blocks, short last super-blocks (1, 2 blocks),
# widths of real models
AWKWARD = [(1, 64), (1, 96), (3, 288), (7, 576), (2, 2080), (1, 4096), (5, 4128), (64, 64), (1000, 96),
           (65, 14336), (4096, 4096), (65536, 4096), (4096, 14336), (1, 32 * 1023)]


@pytest.mark.parametrize("rows,cols", AWKWARD)
def test_q4_bits_per_weight_at_most_4_5(rows, cols):
    # the tensor is exactly rows * row_bytes, and with as many column scales as the converter may give it
    # the whole stays within 4.5 bits per weight
    k = max_outlier_columns(DTYPE_Q4, rows, cols)
    assert bits_per_weight(DTYPE_Q4, rows, cols, k) <= 4.5
    if rows * cols <= 1 << 20:
        w = np.random.default_rng(rows + cols).standard_normal((rows, cols)).astype(np.float32)
        assert len(quantize_rows(w, DTYPE_Q4, "W")) == rows * row_bytes(DTYPE_Q4, cols)


def test_q4_bits_per_weight_bound_every_width():
    # the bound proven in docs/FILE_FORMAT.md, checked for every width up to 64K and a spread of row counts
    for nb in range(2, 2049):
        cols = 32 * nb
        assert 8 * row_bytes(DTYPE_Q4, cols) <= 4.5 * cols
        for rows in (1, 2, 3, 31, 1000):
            assert bits_per_weight(DTYPE_Q4, rows, cols, max_outlier_columns(DTYPE_Q4, rows, cols)) <= 4.5
    assert choose_dtype("a.weight", (8, 32), True, True, DTYPE_Q4, ())[0] == DTYPE_F16  # one block: not q4


def test_format_version_1(tmp_path):
    # version 1 differs only in q4 and in outlier columns: an f32 file of version 1 is read, a q4 one is
    # refused by name
    for quant, ok in (("f32", True), ("q4", False)):
        out = tmp_path / f"{quant}.rwkv"
        convert(SRC, str(out), quant=quant, progress=False)
        blob = bytearray(out.read_bytes())
        blob[8:12] = (1).to_bytes(4, "little")
        out.write_bytes(bytes(blob))
        if ok:
            rwkv_cpu.Model(str(out)).forward([1])
        else:
            with pytest.raises(rwkv_cpu.RwkvError, match="format version 1.*convert the checkpoint again"):
                rwkv_cpu.Model(str(out))
    blob[8:12] = (3).to_bytes(4, "little")
    out.write_bytes(bytes(blob))
    with pytest.raises(rwkv_cpu.RwkvError, match="versions 1 to 2"):
        rwkv_cpu.Model(str(out))
