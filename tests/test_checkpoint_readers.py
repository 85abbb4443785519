"""The converter's checkpoint readers: torch zip archives and safetensors files (single or sharded).
Damaged, truncated and lying files are refused with ModelFormatError before any tensor is read."""
from __future__ import annotations

import json
import os
import struct
import zipfile

import numpy as np
import pytest

from ckpt_helpers import (RANDOM, TINY, read_safetensors, safetensors_array, write_pth, write_safetensors_raw,
                          write_zip, tensor_pickle)
from rwkv_cpu.convert import torch_zip
from rwkv_cpu.convert.hf import fla_to_blinkdl, hf_to_blinkdl, open_weights_file, to_blinkdl_names
from rwkv_cpu.convert.safetensors_reader import open_safetensors, open_sharded
from rwkv_cpu.convert.tensors import bf16_to_f32
from rwkv_cpu.convert.torch_zip import open_torch_zip
from rwkv_cpu.errors import ModelFormatError, RwkvIOError, UnsupportedModelError


def patch(path, offset: int, fmt: str, *values) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def central_entry(path, name: str) -> int:
    """Offset of the central directory record of zip entry `name`."""
    blob = open(path, "rb").read()
    with zipfile.ZipFile(path) as zf:
        start = min(i.header_offset for i in zf.infolist())
    pos = blob.find(b"PK\x01\x02", start)
    while pos >= 0:
        n = struct.unpack_from("<H", blob, pos + 28)[0]
        if blob[pos + 46:pos + 46 + n] == name.encode():
            return pos
        pos = blob.find(b"PK\x01\x02", pos + 4)
    raise KeyError(name)


# ---- torch zip ---------------------------------------------------------------------------------------
def test_pth_matches_safetensors_values():
    header, data = read_safetensors(os.path.join(TINY, "hf", "model.safetensors"))
    with open_torch_zip(os.path.join(TINY, "model.pth")) as ckpt:
        assert len(ckpt.tensors) == 270 and ckpt.source_format == "pth"
        emb = ckpt.tensors["emb.weight"]
        assert emb.dtype == "F32" and emb.shape == (256, 64)
        np.testing.assert_array_equal(emb.rows(), safetensors_array(header, data, "rwkv.embeddings.weight"))
        np.testing.assert_array_equal(ckpt.tensors["blocks.5.att.time_decay"].rows(),
                                      safetensors_array(header, data, "rwkv.blocks.5.attention.time_decay"))


def test_bf16_pth_rows_in_chunks():
    with open_torch_zip(os.path.join(RANDOM, "model.pth")) as ckpt:
        emb = ckpt.tensors["emb.weight"]
        assert emb.dtype == "BF16" and emb.shape == (65536, 128)
        bits = emb.raw()  # zero-copy view of the mapped file
        assert not bits.flags.writeable and not bits.flags.owndata
        chunk = emb.rows(1000, 1010)
        assert chunk.dtype == np.float32 and chunk.shape == (10, 128)
        np.testing.assert_array_equal(chunk, bf16_to_f32(np.array(bits[1000:1010])))
        del bits
        emb.release(0, 1010)


def test_bf16_widening_is_exact():
    bits = np.arange(1 << 16, dtype=np.uint16)
    wide = bf16_to_f32(bits)
    assert np.array_equal(wide.view(np.uint32) >> 16, bits.astype(np.uint32))
    assert wide[0x3F80] == 1.0 and wide[0xC000] == -2.0 and np.isinf(wide[0x7F80])


def test_hand_made_pth_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.array([1.5, -2.25], dtype=np.float16)
    p = tmp_path / "m.pth"
    write_pth(str(p), {"a": (a, "F32"), "b": (b, "F16")}, prefix="some name")
    with open_torch_zip(str(p)) as ckpt:
        np.testing.assert_array_equal(ckpt.tensors["a"].rows(), a)
        np.testing.assert_array_equal(ckpt.tensors["b"].rows(), b.astype(np.float32))


def test_deflated_storages_are_inflated(tmp_path):
    a = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    p = tmp_path / "m.pth"
    write_pth(str(p), {"a": (a, "F32")}, compress=zipfile.ZIP_DEFLATED)
    with open_torch_zip(str(p)) as ckpt:
        np.testing.assert_array_equal(ckpt.tensors["a"].rows(), a)


def test_zip64_entries(tmp_path):
    """Checkpoints over 4 GiB use zip64 records (sizes in an extra field); read one small one."""
    a = np.arange(32, dtype=np.float32).reshape(4, 8)
    p = tmp_path / "m.pth"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", tensor_pickle([("a", "F32", "0", 32, (4, 8), (8, 1), 0)]))
        with zf.open("archive/data/0", "w", force_zip64=True) as f:
            f.write(a.tobytes())
    with zipfile.ZipFile(p) as zf:
        assert zf.getinfo("archive/data/0").extract_version >= 45  # zip64
    with open_torch_zip(str(p)) as ckpt:
        np.testing.assert_array_equal(ckpt.tensors["a"].rows(), a)


def test_deflated_storage_over_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_zip, "MAX_INFLATE", 100)
    p = tmp_path / "m.pth"
    write_pth(str(p), {"a": (np.zeros(64, np.float32), "F32")}, compress=zipfile.ZIP_DEFLATED)
    with pytest.raises(ModelFormatError, match="over the 100-byte limit"):
        open_torch_zip(str(p))


def test_zip_bomb_declared_size_refused_before_inflating(tmp_path):
    p = tmp_path / "bomb.pth"
    write_zip(str(p), {"archive/data.pkl": tensor_pickle([]), "archive/byteorder": b"little"},
              compress=zipfile.ZIP_DEFLATED)
    patch(p, central_entry(p, "archive/data.pkl") + 24, "<I", 0xFFFFFFF0)  # uncompressed size: ~4 GiB
    with pytest.raises(ModelFormatError, match="over the .*-byte limit"):
        open_torch_zip(str(p))


def test_zip_entry_inflating_past_its_declared_size(tmp_path):
    """The inflater stops at the declared size; the CRC then shows the lie."""
    p = tmp_path / "lie.pth"
    write_zip(str(p), {"archive/data.pkl": tensor_pickle([]) + b"\0" * 5000}, compress=zipfile.ZIP_DEFLATED)
    patch(p, central_entry(p, "archive/data.pkl") + 24, "<I", 20)
    with pytest.raises(ModelFormatError):
        open_torch_zip(str(p))


def _tiny_copy(tmp_path):
    p = tmp_path / "model.pth"
    p.write_bytes(open(os.path.join(TINY, "model.pth"), "rb").read())
    with zipfile.ZipFile(p) as zf:
        prefix = zf.namelist()[0].split("/")[0]
    return p, prefix


def test_zip_entry_size_past_end_of_file(tmp_path):
    p, prefix = _tiny_copy(tmp_path)
    cd = central_entry(p, f"{prefix}/data/0")
    patch(p, cd + 20, "<II", 0x7FFFFFFF, 0x7FFFFFFF)  # compressed and uncompressed size
    with pytest.raises(ModelFormatError, match="past the end of the file"):
        open_torch_zip(str(p))


def test_stored_entry_sizes_disagree(tmp_path):
    p, prefix = _tiny_copy(tmp_path)
    patch(p, central_entry(p, f"{prefix}/data/0") + 24, "<I", 12)
    with pytest.raises(ModelFormatError, match="has size 12 but 65536 stored bytes"):
        open_torch_zip(str(p))


def test_storage_entry_smaller_than_storage(tmp_path):
    p, prefix = _tiny_copy(tmp_path)
    patch(p, central_entry(p, f"{prefix}/data/0") + 20, "<II", 1000, 1000)
    with pytest.raises(ModelFormatError, match="should hold 16384 F32 elements"):
        open_torch_zip(str(p))


def test_local_header_offset_lies(tmp_path):
    p, prefix = _tiny_copy(tmp_path)
    patch(p, central_entry(p, f"{prefix}/data/1") + 42, "<I", 12345)
    with pytest.raises(ModelFormatError, match="no local header|disagrees"):
        open_torch_zip(str(p))
    patch(p, central_entry(p, f"{prefix}/data/1") + 42, "<I", os.path.getsize(p) - 10)
    with pytest.raises(ModelFormatError, match="outside the file"):
        open_torch_zip(str(p))


def test_pickle_entry_header_offset_lies(tmp_path):
    """zipfile would seek before the start of the file; the local header is checked first."""
    p, prefix = _tiny_copy(tmp_path)
    patch(p, central_entry(p, f"{prefix}/data.pkl") + 42, "<I", 0xFFFFFF00)
    with pytest.raises(ModelFormatError, match="outside the file|damaged"):
        open_torch_zip(str(p))


def test_corrupt_deflate_stream(tmp_path):
    p = tmp_path / "m.pth"
    write_pth(str(p), {"a": (np.arange(256, dtype=np.float32), "F32")}, compress=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("archive/data/0")
    blob = bytearray(p.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    blob[start:start + 8] = b"\xff" * 8
    p.write_bytes(bytes(blob))
    with pytest.raises(ModelFormatError, match="damaged or truncated zip archive"):
        open_torch_zip(str(p))


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.99])
def test_truncated_pth(tmp_path, keep):
    blob = open(os.path.join(TINY, "model.pth"), "rb").read()
    p = tmp_path / "cut.pth"
    p.write_bytes(blob[:int(len(blob) * keep)])
    with pytest.raises(ModelFormatError):
        open_weights_file(str(p))


def test_legacy_torch_format(tmp_path):
    p = tmp_path / "old.pth"
    p.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.")
    with pytest.raises(UnsupportedModelError, match="unsupported legacy torch format"):
        open_weights_file(str(p))


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"hello world, this is not a model" * 10)
    with pytest.raises(ModelFormatError, match="neither a torch zip"):
        open_weights_file(str(p))
    with pytest.raises(RwkvIOError):
        open_weights_file(str(tmp_path / "missing.pth"))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ModelFormatError, match="empty"):
        open_weights_file(str(tmp_path / "empty.pth"))


def test_non_contiguous_tensor_refused(tmp_path):
    p = tmp_path / "t.pth"
    write_pth(str(p), {"w": (np.zeros((4, 8), np.float32), "F32")}, strides={"w": (1, 4)})
    with pytest.raises(ModelFormatError, match="w is not contiguous"):
        open_torch_zip(str(p))


def test_size_one_dims_ignore_strides(tmp_path):
    """torch writes (1,1,C) vectors with strides like (C, C, 1): contiguous all the same."""
    p = tmp_path / "t.pth"
    write_pth(str(p), {"v": (np.ones((1, 1, 8), np.float32), "F32")}, strides={"v": (8, 8, 1)})
    with open_torch_zip(str(p)) as ckpt:
        assert ckpt.tensors["v"].shape == (1, 1, 8)


def test_tensor_past_its_storage(tmp_path):
    p = tmp_path / "t.pth"
    files = {"a/data.pkl": tensor_pickle([("w", "F32", "0", 4, (8,), (1,), 0)]), "a/data/0": b"\0" * 16}
    write_zip(str(p), files)
    with pytest.raises(ModelFormatError, match="runs past the end of storage 0"):
        open_torch_zip(str(p))


def test_missing_storage_entry(tmp_path):
    p = tmp_path / "t.pth"
    write_zip(str(p), {"a/data.pkl": tensor_pickle([("w", "F32", "7", 4, (4,), (1,), 0)])})
    with pytest.raises(ModelFormatError, match="a/data/7 is missing"):
        open_torch_zip(str(p))


def test_big_endian_refused(tmp_path):
    p = tmp_path / "t.pth"
    write_zip(str(p), {"a/data.pkl": tensor_pickle([]), "a/byteorder": b"big"})
    with pytest.raises(UnsupportedModelError, match="little-endian"):
        open_torch_zip(str(p))


def test_archive_without_or_with_two_pickles(tmp_path):
    p = tmp_path / "t.pth"
    write_zip(str(p), {"a/x": b"1"})
    with pytest.raises(ModelFormatError, match="found none"):
        open_torch_zip(str(p))
    write_zip(str(p), {"a/data.pkl": tensor_pickle([]), "b/data.pkl": tensor_pickle([])})
    with pytest.raises(ModelFormatError, match="expected one"):
        open_torch_zip(str(p))


# ---- safetensors -------------------------------------------------------------------------------------
def _tiny_st():
    return read_safetensors(os.path.join(TINY, "hf", "model.safetensors"))


def test_safetensors_values():
    header, data = _tiny_st()
    with open_safetensors(os.path.join(TINY, "hf", "model.safetensors")) as ckpt:
        assert len(ckpt.tensors) == 270
        t = ckpt.tensors["rwkv.blocks.2.attention.key.weight"]
        np.testing.assert_array_equal(t.rows(), safetensors_array(header, data, t.name))


@pytest.mark.parametrize("keep", [4, 100, 0.5, -1])
def test_truncated_safetensors(tmp_path, keep):
    blob = open(os.path.join(TINY, "hf", "model.safetensors"), "rb").read()
    p = tmp_path / "cut.safetensors"
    p.write_bytes(blob[:keep if isinstance(keep, int) and keep > 0 else int(len(blob) * keep) if keep > 0
                  else len(blob) - 1])
    with pytest.raises(ModelFormatError, match="truncated"):
        open_safetensors(str(p))


def edited(tmp_path, edit):
    header, data = _tiny_st()
    edit(header)
    p = tmp_path / "edited.safetensors"
    write_safetensors_raw(str(p), header, data)
    return str(p)


def test_offsets_past_end(tmp_path):
    def edit(h):
        h["head.weight"]["data_offsets"] = [10 ** 9, 10 ** 9 + 65536]
    with pytest.raises(ModelFormatError, match="head.weight: data_offsets .* lie outside"):
        open_safetensors(edited(tmp_path, edit))


def test_overlapping_ranges(tmp_path):
    def edit(h):
        h["rwkv.ln_out.bias"]["data_offsets"] = [h["head.weight"]["data_offsets"][0] + 128,
                                                 h["head.weight"]["data_offsets"][0] + 128 + 256]
    with pytest.raises(ModelFormatError, match="overlap"):
        open_safetensors(edited(tmp_path, edit))


def test_size_does_not_match_shape(tmp_path):
    def edit(h):
        h["head.weight"]["shape"] = [256, 65]
    with pytest.raises(ModelFormatError, match="needs 66560"):
        open_safetensors(edited(tmp_path, edit))


@pytest.mark.parametrize("field,value,msg", [("dtype", "F8_E4M3", "unsupported dtype"),
                                             ("shape", [-1], "non-negative"), ("shape", [True], "non-negative"),
                                             ("data_offsets", [0], "two ints"), ("extra", 1, "exactly")])
def test_bad_entries(tmp_path, field, value, msg):
    def edit(h):
        h["head.weight"][field] = value
    with pytest.raises(ModelFormatError, match=msg):
        open_safetensors(edited(tmp_path, edit))


@pytest.mark.parametrize("header,msg", [
    (b'{"a": 1, "a": 2}', "appears twice"),
    (b"\xff\xfe", "UTF-8 JSON"),
    (b"[" * 100000 + b"]" * 100000, "JSON"),
    (b"[]", "not a JSON object"),
    (b'{"__metadata__": {"k": 1}}', "strings to strings"),
])
def test_bad_headers(tmp_path, header, msg):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ModelFormatError, match=msg):
        open_safetensors(str(p))


def test_header_length_limits(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(ModelFormatError, match="exceeds"):
        open_safetensors(str(p))
    p.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(ModelFormatError, match="runs past the end"):
        open_safetensors(str(p))


# ---- shards ------------------------------------------------------------------------------------------
def split_safetensors(src: str, out_dir, n: int = 2, index_name: str = "model.safetensors.index.json"):
    """Write `src` as n shards plus an index, as Hugging Face shards a checkpoint."""
    header, data = read_safetensors(src)
    header.pop("__metadata__", None)
    names = sorted(header)
    weight_map = {}
    for k in range(n):
        part = names[k::n]
        shard, blob, pos = {}, [], 0
        for name in part:
            b, e = header[name]["data_offsets"]
            shard[name] = {**header[name], "data_offsets": [pos, pos + e - b]}
            blob.append(data[b:e])
            pos += e - b
        fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        write_safetensors_raw(os.path.join(out_dir, fname), shard, b"".join(blob))
        weight_map.update({name: fname for name in part})
    with open(os.path.join(out_dir, index_name), "w") as f:
        json.dump({"metadata": {"total_size": len(data)}, "weight_map": weight_map}, f)
    return weight_map


def test_sharded_safetensors(tmp_path):
    split_safetensors(os.path.join(TINY, "hf", "model.safetensors"), tmp_path, 3)
    header, data = _tiny_st()
    with open_weights_file(str(tmp_path / "model.safetensors.index.json")) as ckpt:
        assert ckpt.source_format == "hf-safetensors" and len(ckpt.tensors) == 270
        for name in ("head.weight", "rwkv.blocks.11.feed_forward.value.weight"):
            np.testing.assert_array_equal(ckpt.tensors[name].rows(), safetensors_array(header, data, name))


def _rewrite_index(tmp_path, edit):
    path = tmp_path / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    edit(index["weight_map"])
    path.write_text(json.dumps(index))
    return str(path)


def test_index_shard_name_must_be_plain(tmp_path):
    split_safetensors(os.path.join(TINY, "hf", "model.safetensors"), tmp_path)
    path = _rewrite_index(tmp_path, lambda m: m.update({"head.weight": "../model-00001-of-00002.safetensors"}))
    with pytest.raises(ModelFormatError, match="not a plain file name"):
        open_sharded(path, "hf-safetensors", open_safetensors)


def test_index_and_shards_disagree(tmp_path):
    wm = split_safetensors(os.path.join(TINY, "hf", "model.safetensors"), tmp_path)
    other = "model-00002-of-00002.safetensors" if wm["head.weight"].startswith("model-00001") else \
        "model-00001-of-00002.safetensors"
    path = _rewrite_index(tmp_path, lambda m: m.update({"head.weight": other}))
    with pytest.raises(ModelFormatError, match="head.weight is in shard"):
        open_weights_file(path)
    path = _rewrite_index(tmp_path, lambda m: m.update({"head.weight": wm["head.weight"], "ghost": other}))
    with pytest.raises(ModelFormatError, match="ghost, which is in none of the shards"):
        open_weights_file(path)


def test_index_names_missing_shard(tmp_path):
    split_safetensors(os.path.join(TINY, "hf", "model.safetensors"), tmp_path)
    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(RwkvIOError, match="model-00002-of-00002"):
        open_weights_file(str(tmp_path / "model.safetensors.index.json"))


# ---- Hugging Face names ------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", [TINY, RANDOM])
def test_hf_names_map_to_blinkdl_names(fixture):
    with open_weights_file(os.path.join(fixture, "model.pth")) as pth, \
            open_weights_file(os.path.join(fixture, "hf", "model.safetensors")) as st:
        mapped, scheme = to_blinkdl_names(st.tensors)
        assert scheme == "hf"
        assert sorted(mapped) == sorted(pth.tensors)
        same, _ = to_blinkdl_names(pth.tensors)
        assert same.keys() == pth.tensors.keys()


def test_hf_rules():
    assert hf_to_blinkdl("rwkv.blocks.0.pre_ln.weight") == "blocks.0.ln0.weight"
    assert hf_to_blinkdl("rwkv.blocks.7.attention.time_mix_gate") == "blocks.7.att.time_mix_g"
    assert hf_to_blinkdl("rwkv.blocks.7.feed_forward.time_mix_receptance") == "blocks.7.ffn.time_mix_r"
    assert hf_to_blinkdl("rwkv.blocks.1.attention.time_maa_w1") == "blocks.1.att.time_maa_w1"  # v6 unchanged
    assert hf_to_blinkdl("rwkv.embeddings.weight") == "emb.weight"
    assert hf_to_blinkdl("rwkv.ln_out.bias") == "ln_out.bias"


def test_fla_rules_and_transposed_lora(tmp_path):
    assert fla_to_blinkdl("model.layers.3.attn.r_proj.weight") == ("blocks.3.att.receptance.weight", False)
    assert fla_to_blinkdl("model.layers.0.pre_norm.bias") == ("blocks.0.ln0.bias", False)
    assert fla_to_blinkdl("model.layers.2.attn.g_norm.weight") == ("blocks.2.att.ln_x.weight", False)
    assert fla_to_blinkdl("model.layers.2.attn.w_lora.lora.0.weight") == ("blocks.2.att.w1", True)
    assert fla_to_blinkdl("model.layers.2.attn.a_lora.lora.2.bias") == ("blocks.2.att.a0", False)
    assert fla_to_blinkdl("model.layers.2.ffn.x_k") == ("blocks.2.ffn.x_k", False)
    assert fla_to_blinkdl("model.norm.weight") == ("ln_out.weight", False)
    assert fla_to_blinkdl("model.layers.2.attn.unknown") is None
    w = np.arange(6, dtype=np.float32).reshape(2, 3)  # fla stores w1^T: [D, C]
    p = tmp_path / "m.pth"
    write_pth(str(p), {"model.layers.0.attn.w_lora.lora.0.weight": (w, "F32"), "lm_head.weight": (w, "F32")})
    with open_weights_file(str(p)) as ckpt:
        mapped, scheme = to_blinkdl_names(ckpt.tensors)
        assert scheme == "fla" and set(mapped) == {"blocks.0.att.w1", "head.weight"}
        w1 = mapped["blocks.0.att.w1"]
        assert w1.shape == (3, 2)
        np.testing.assert_array_equal(w1.rows(), w.T)
        np.testing.assert_array_equal(w1.rows(1, 3), w.T[1:3])


def test_unmapped_names_keep_their_spelling(tmp_path):
    p = tmp_path / "m.pth"
    z = (np.zeros(2, np.float32), "F32")
    write_pth(str(p), {"rwkv.embeddings.weight": z, "something.else": z})
    with open_weights_file(str(p)) as ckpt:
        mapped, _ = to_blinkdl_names(ckpt.tensors)
    assert set(mapped) == {"emb.weight", "something.else"}


# ---- fuzz --------------------------------------------------------------------------------------------
def _mutate(rng, blob: bytes) -> bytes:
    d = bytearray(blob)
    for _ in range(rng.randint(1, 4)):
        p = rng.randrange(len(d))
        r = rng.random()
        if r < 0.6:
            d[p] = rng.randrange(256)
        elif r < 0.8:
            del d[p:p + rng.randint(1, 20)]
        else:
            d[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(d)


@pytest.mark.parametrize("kind", ["pth", "deflated-pth", "safetensors"])
def test_mutated_files_raise_only_rwkv_errors(tmp_path, kind):
    """Random damage to small checkpoints: a clean RwkvError every time, never another exception."""
    import random

    from rwkv_cpu.errors import RwkvError

    src = tmp_path / ("src.safetensors" if kind == "safetensors" else "src.pth")
    tensors = {"a": (np.arange(64, dtype=np.float32).reshape(8, 8), "F32"), "b": (np.ones(5, np.float16), "F16")}
    if kind == "safetensors":
        header = {"a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]},
                  "b": {"dtype": "BF16", "shape": [3], "data_offsets": [64, 70]}, "__metadata__": {"k": "v"}}
        write_safetensors_raw(str(src), header, bytes(70))
    else:
        write_pth(str(src), tensors, compress=zipfile.ZIP_DEFLATED if kind == "deflated-pth" else zipfile.ZIP_STORED)
    base = src.read_bytes()
    rng = random.Random(1234)
    target = tmp_path / ("m" + src.suffix)
    for _ in range(150):
        target.write_bytes(_mutate(rng, base))
        try:
            with open_weights_file(str(target)) as ckpt:
                for t in ckpt.tensors.values():
                    t.rows()
        except RwkvError:
            pass
