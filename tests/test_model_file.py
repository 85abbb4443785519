"""The .rwkv reader refuses every inconsistent file with a clear error (docs/FILE_FORMAT.md)."""
from __future__ import annotations

import os
import struct

import pytest

import rwkv_cpu

HEADER = 256
ENTRY = 128


def _entries(raw: bytes):
    n = struct.unpack_from("<I", raw, 48)[0]
    for i in range(n):
        off = HEADER + i * ENTRY
        name = raw[off:off + 64].split(b"\0")[0].decode()
        yield i, off, name


def _entry_offset(raw: bytes, tensor: str) -> int:
    for _, off, name in _entries(raw):
        if name == tensor:
            return off
    raise KeyError(tensor)


@pytest.fixture
def good(converted):
    with open(converted("tiny-5v2-730K"), "rb") as f:
        return f.read()


def _load(tmp_path, raw: bytes):
    p = tmp_path / "m.rwkv"
    p.write_bytes(raw)
    return rwkv_cpu.Model(str(p))


def _patch(raw: bytes, offset: int, fmt: str, *values) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def test_good_file_loads(tmp_path, good):
    assert _load(tmp_path, good).n_layer == 12


def test_missing_file():
    with pytest.raises(rwkv_cpu.RwkvIOError, match="No such file"):
        rwkv_cpu.Model("/nonexistent/model.rwkv")


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(rwkv_cpu.RwkvError, match="not a regular file"):
        rwkv_cpu.Model(str(tmp_path))


@pytest.mark.parametrize("keep", [0, 10, HEADER - 1, HEADER + 5, 5000])
def test_truncated(tmp_path, good, keep):
    with pytest.raises(rwkv_cpu.ModelFormatError, match="truncated"):
        _load(tmp_path, good[:keep])


def test_truncated_by_one_byte(tmp_path, good):
    with pytest.raises(rwkv_cpu.ModelFormatError, match="truncated"):
        _load(tmp_path, good[:-1])


def test_trailing_garbage(tmp_path, good):
    with pytest.raises(rwkv_cpu.ModelFormatError, match="damaged"):
        _load(tmp_path, good + b"\0" * 64)


def test_wrong_magic(tmp_path, good):
    with pytest.raises(rwkv_cpu.ModelFormatError, match="magic"):
        _load(tmp_path, b"GGUF" + good[4:])


def test_unknown_version(tmp_path, good):
    with pytest.raises(rwkv_cpu.UnsupportedModelError, match="version 7"):
        _load(tmp_path, _patch(good, 8, "<I", 7))


def test_unknown_architecture(tmp_path, good):
    with pytest.raises(rwkv_cpu.UnsupportedModelError, match="architecture"):
        _load(tmp_path, _patch(good, 16, "<I", 99))


def test_absurd_dimensions(tmp_path, good):
    with pytest.raises(rwkv_cpu.ModelFormatError, match="n_layer"):
        _load(tmp_path, _patch(good, 20, "<I", 2**31))
    with pytest.raises(rwkv_cpu.ModelFormatError, match="n_vocab"):
        _load(tmp_path, _patch(good, 44, "<I", 2**30))
    with pytest.raises(rwkv_cpu.ModelFormatError, match="head_size"):
        _load(tmp_path, _patch(good, 36, "<I", 3))


def test_huge_tensor_count(tmp_path, good):
    with pytest.raises(rwkv_cpu.ModelFormatError, match="tensor table"):
        _load(tmp_path, _patch(good, 48, "<I", 1_000_000))


def test_reserved_bytes_must_be_zero(tmp_path, good):
    with pytest.raises(rwkv_cpu.ModelFormatError, match="reserved"):
        _load(tmp_path, _patch(good, 200, "<B", 1))


def test_tensor_offset_past_end(tmp_path, good):
    off = _entry_offset(good, "head.weight")
    with pytest.raises(rwkv_cpu.ModelFormatError, match="head.weight.*past the end"):
        _load(tmp_path, _patch(good, off + 104, "<Q", len(good)))
    with pytest.raises(rwkv_cpu.ModelFormatError, match="head.weight"):
        _load(tmp_path, _patch(good, off + 104, "<Q", 2**64 - 64))


def test_misaligned_offset(tmp_path, good):
    off = _entry_offset(good, "head.weight")
    cur = struct.unpack_from("<Q", good, off + 104)[0]
    with pytest.raises(rwkv_cpu.ModelFormatError, match="aligned"):
        _load(tmp_path, _patch(good, off + 104, "<Q", cur + 4))


def test_overlapping_tensors(tmp_path, good):
    a = _entry_offset(good, "ln_out.weight")
    b = _entry_offset(good, "ln_out.bias")
    a_off = struct.unpack_from("<Q", good, a + 104)[0]
    with pytest.raises(rwkv_cpu.ModelFormatError, match="overlap"):
        _load(tmp_path, _patch(good, b + 104, "<Q", a_off))


def test_size_does_not_match_shape(tmp_path, good):
    off = _entry_offset(good, "ln_out.weight")
    with pytest.raises(rwkv_cpu.ModelFormatError, match="expected"):
        _load(tmp_path, _patch(good, off + 72, "<Q", 65))


def test_unknown_dtype(tmp_path, good):
    off = _entry_offset(good, "head.weight")
    with pytest.raises(rwkv_cpu.UnsupportedModelError, match="dtype"):
        _load(tmp_path, _patch(good, off + 64, "<I", 77))


def test_vector_must_be_f32(tmp_path, good):
    # ln_out.weight [64] f32 relabelled f16 with half the bytes: a valid table, but the model refuses it
    off = _entry_offset(good, "ln_out.weight")
    raw = _patch(good, off + 64, "<I", 1)
    raw = _patch(raw, off + 112, "<Q", 128)
    with pytest.raises(rwkv_cpu.ModelFormatError, match="ln_out.weight.*dtype"):
        _load(tmp_path, raw)


def test_missing_tensor_is_named(tmp_path, good):
    off = _entry_offset(good, "blocks.3.att.gate.weight")
    b = bytearray(good)
    b[off:off + 64] = b"blocks.3.att.gat3.weight".ljust(64, b"\0")
    with pytest.raises(rwkv_cpu.ModelFormatError, match="blocks.3.att.gate.weight is missing"):
        _load(tmp_path, bytes(b))


def test_duplicate_name(tmp_path, good):
    a = _entry_offset(good, "ln_out.weight")
    b = _entry_offset(good, "ln_out.bias")
    raw = bytearray(good)
    raw[b:b + 64] = raw[a:a + 64]
    with pytest.raises(rwkv_cpu.ModelFormatError, match="twice"):
        _load(tmp_path, bytes(raw))


def test_wrong_shape_is_named(tmp_path, good):
    # swap the two dims of a square-incompatible matrix: [F, C] -> [C, F]
    off = _entry_offset(good, "blocks.0.ffn.key.weight")
    d0, d1 = struct.unpack_from("<QQ", good, off + 72)
    with pytest.raises(rwkv_cpu.ModelFormatError, match=r"blocks.0.ffn.key.weight has shape \[64, 256\]"):
        _load(tmp_path, _patch(good, off + 72, "<QQ", d1, d0))


def test_name_not_terminated(tmp_path, good):
    off = _entry_offset(good, "head.weight")
    b = bytearray(good)
    b[off:off + 64] = b"x" * 64
    with pytest.raises(rwkv_cpu.ModelFormatError, match="name"):
        _load(tmp_path, bytes(b))


def test_every_single_byte_header_corruption_is_handled(tmp_path, good):
    # Flip each byte of the header and of the first table entry: the loader must either load or raise a
    # rwkv_cpu error, never crash (the fuzzers push much further; this runs in every test session).
    for i in list(range(0, HEADER)) + list(range(HEADER, HEADER + ENTRY)):
        b = bytearray(good)
        b[i] ^= 0xFF
        p = tmp_path / f"c{i}.rwkv"
        p.write_bytes(bytes(b))
        try:
            rwkv_cpu.Model(str(p)).forward([1])
        except rwkv_cpu.RwkvError:
            pass
        os.unlink(p)
