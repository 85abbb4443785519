"""State files (docs/FILE_FORMAT.md "State file"): round trips, refusal of other models' states, and damaged,
truncated or crafted files refused with a clear error (the C reader takes untrusted bytes)."""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest

import rwkv_cpu
from rwkv_cpu import ModelFormatError, RwkvArgumentError, RwkvIOError, StateMismatchError, UnsupportedModelError

HEADER = 64


@pytest.fixture(scope="module")
def model():
    return rwkv_cpu.Model(n_threads=1)


@pytest.fixture(scope="module")
def advanced(model):
    _, state = model.forward(model.tokenizer.encode("The quick brown fox jumps"))
    return state


def refix_crc(data: bytes) -> bytes:
    """Recompute the CRC of a state file image after an edit (to reach the checks behind the CRC)."""
    crc = zlib.crc32(data[HEADER:], zlib.crc32(data[:60]))
    return data[:60] + struct.pack("<I", crc) + data[HEADER:]


def edit_u32(data: bytes, offset: int, value: int) -> bytes:
    return refix_crc(data[:offset] + struct.pack("<I", value) + data[offset + 4:])


def test_layout_is_as_documented(model, advanced):
    data = advanced.to_bytes({"note": "hi"})
    magic, version, hsize, arch, L, C, A, H, N, F, V, nfl, msize, crc = struct.unpack_from("<8s10IQII", data)
    assert magic == b"RWKVSTA\0" and version == 1 and hsize == HEADER
    assert (arch, L, C, A, H, N, F, V) == (52, model.n_layer, model.n_embd, model.dim_att, model.n_head,
                                           model.head_size, model.n_ffn, model.n_vocab)
    assert nfl == model.state_size and len(data) == HEADER + msize + 4 * nfl
    assert crc == zlib.crc32(data[HEADER:], zlib.crc32(data[:60]))
    floats = np.frombuffer(data[HEADER + msize:], dtype="<f4")
    assert np.array_equal(floats, advanced.to_numpy())
    assert b'"note": "hi"' in data[HEADER:HEADER + msize]


def test_crc_matches_zlib_at_every_alignment(model, advanced):
    # metadata of 0..40 bytes moves the floats to every alignment and leaves every tail length for the
    # 8-bytes-a-step CRC loop; zlib's crc32 is the reference
    for n in range(0, 41):
        data = advanced.to_bytes({"p": "x" * n})
        assert struct.unpack_from("<I", data, 60)[0] == zlib.crc32(data[HEADER:], zlib.crc32(data[:60]))
        assert np.array_equal(model.state_from_bytes(data).to_numpy(), advanced.to_numpy())


def test_save_load_round_trip_gives_identical_logits(model, advanced, tmp_path):
    path = tmp_path / "s.rwkvstate"
    advanced.save(path, meta={"n_tokens": 25, "text": "我很好🙂"})
    loaded = model.load_state(path)
    assert np.array_equal(loaded.to_numpy(), advanced.to_numpy())
    assert loaded.meta["n_tokens"] == 25 and loaded.meta["text"] == "我很好🙂" and "rwkv_cpu" in loaded.meta
    ids = model.tokenizer.encode(" over the lazy dog")
    a, _ = model.forward(ids, advanced.copy())
    b, _ = model.forward(ids, loaded)
    assert np.array_equal(a, b)
    assert os.listdir(tmp_path) == ["s.rwkvstate"]      # no temporary file left behind


def test_bytes_round_trip(model, advanced):
    loaded = model.state_from_bytes(advanced.to_bytes())
    assert np.array_equal(loaded.to_numpy(), advanced.to_numpy())
    assert loaded.meta == {"rwkv_cpu": rwkv_cpu.__version__}


def test_save_replaces_an_old_file(model, advanced, tmp_path):
    path = tmp_path / "s.bin"
    model.new_state().save(path)
    advanced.save(path)
    assert np.array_equal(model.load_state(path).to_numpy(), advanced.to_numpy())


def test_state_of_another_model_is_refused(model, advanced, converted, tmp_path):
    other = rwkv_cpu.Model(converted("random-5v2"), n_threads=1)
    path = tmp_path / "tiny.state"
    advanced.save(path)
    with pytest.raises(StateMismatchError, match="another model.*n_layer 12 vs 3"):
        other.load_state(path)
    with pytest.raises(StateMismatchError, match="another model"):
        other.state_from_bytes(advanced.to_bytes())
    # and the other way round: a larger state is refused by its header, not read
    big = tmp_path / "random.state"
    other.new_state().save(big)
    with pytest.raises(StateMismatchError, match="n_layer 3 vs 12"):
        model.load_state(big)


@pytest.mark.parametrize("offset, value, error, message", [
    (16, 99, UnsupportedModelError, r"architecture unknown \(id 99\)"),  # an architecture this build does not run
    (40, 999, StateMismatchError, "n_ffn 999 vs 256"),            # same attention shape, another model
    (44, 65536, StateMismatchError, "n_vocab 65536 vs 256"),
    (8, 2, UnsupportedModelError, "version 2"),
    (12, 128, ModelFormatError, "header size"),
    (20, 0, ModelFormatError, "dimensions out of range"),
    (32, 3, ModelFormatError, "dimensions out of range"),         # n_head * head_size != dim_att
    (48, 7, ModelFormatError, "7 floats"),                       # n_floats that the dimensions do not make
    (56, 10_000_000, ModelFormatError, "metadata"),
])
def test_crafted_headers_are_refused(model, advanced, tmp_path, offset, value, error, message):
    data = edit_u32(advanced.to_bytes(), offset, value)
    with pytest.raises(error, match=message):
        model.state_from_bytes(data)
    path = tmp_path / "crafted"
    path.write_bytes(data)
    with pytest.raises(error, match=message):
        model.load_state(path)


def test_truncated_files_are_refused(model, advanced, tmp_path):
    data = advanced.to_bytes({"k": "v"})
    path = tmp_path / "t"
    for cut in sorted({0, 1, 8, 63, 64, 65, 80, len(data) // 2, len(data) - 4, len(data) - 1}):
        with pytest.raises(ModelFormatError, match="shorter|truncated"):
            model.state_from_bytes(data[:cut])
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError, match="shorter|truncated"):
            model.load_state(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(ModelFormatError, match="trailing"):
        model.load_state(path)


def test_garbled_files_are_refused(model, advanced):
    data = advanced.to_bytes({"k": "v"})
    rng = np.random.default_rng(0)
    positions = set(range(HEADER + 8)) | set(rng.integers(0, len(data), 200).tolist())
    for pos in sorted(positions):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises((ModelFormatError, StateMismatchError, UnsupportedModelError)):
            model.state_from_bytes(bytes(bad))
    bad = bytearray(data)
    bad[-3] ^= 1                                   # one bit of one float
    with pytest.raises(ModelFormatError, match="corrupt"):
        model.state_from_bytes(bytes(bad))


def test_random_bytes_and_other_files_are_refused(model, tmp_path):
    rng = np.random.default_rng(1)
    for n in (0, 10, 64, 100, 4096):
        with pytest.raises(ModelFormatError):
            model.state_from_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError, match="bad magic"):
        model.load_state(rwkv_cpu.BUNDLED_MODEL)
    with pytest.raises(RwkvIOError, match="cannot open"):
        model.load_state(tmp_path / "missing")
    with pytest.raises(RwkvIOError, match="not a regular file"):
        model.load_state(tmp_path)


def test_header_check_needs_no_model(advanced):
    from rwkv_cpu._ffi import ffi, lib
    data = advanced.to_bytes()
    hdr = ffi.new("rwkv_state_header *")
    assert lib.rwkv_state_file_info(ffi.from_buffer(data), len(data), hdr) == 0
    assert hdr.n_layer == 12 and hdr.n_floats == advanced.size and hdr.data_offset == HEADER + hdr.meta_size
    assert lib.rwkv_state_file_info(ffi.from_buffer(data), len(data) - 1, hdr) == 2


def test_bad_metadata_and_paths(advanced, tmp_path):
    with pytest.raises(RwkvArgumentError, match="JSON"):
        advanced.save(tmp_path / "x", meta={"f": object()})
    with pytest.raises(RwkvArgumentError, match="dict"):
        advanced.to_bytes(meta=[1, 2])
    with pytest.raises(RwkvArgumentError, match="limit"):
        advanced.to_bytes(meta={"big": "x" * (1 << 20)})
    with pytest.raises(RwkvIOError, match="temporary file"):
        advanced.save(tmp_path / "no" / "such" / "dir" / "s")
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_the_old_file(advanced, tmp_path):
    path = tmp_path / "keep"
    path.write_bytes(b"old contents")
    with pytest.raises(RwkvArgumentError):
        advanced.save(path, meta={"big": "x" * (1 << 20)})
    assert path.read_bytes() == b"old contents"


def test_cli_info_describes_a_state_file(advanced, tmp_path):
    import subprocess
    import sys
    path = tmp_path / "conv.state"
    advanced.save(path, meta={"turns": 3})
    p = subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "info", str(path)], capture_output=True, text=True,
                       timeout=120, cwd=os.path.dirname(__file__))
    assert p.returncode == 0, p.stderr
    assert "7,680 floats" in p.stdout and "RWKV v5.2: n_layer 12, n_embd 64" in p.stdout and "turns" in p.stdout
    bad = tmp_path / "bad.state"
    bad.write_bytes(path.read_bytes()[:-1])
    p = subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "info", str(bad)], capture_output=True, text=True,
                       timeout=120, cwd=os.path.dirname(__file__))
    assert p.returncode == 1 and "truncated" in p.stderr
