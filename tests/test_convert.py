"""The converter end to end: checkpoints in every layout -> .rwkv files, checked by reading the files back
with a few lines of struct code (tests/ckpt_helpers.read_rwkv), against numpy on the source values."""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from ckpt_helpers import (RANDOM, TINY, TINY4, p_global, p_str, read_rwkv, read_safetensors, rwkv_array,
                          safetensors_array, tensor_pickle, world_vocab, write_pth, write_safetensors_raw, write_zip)
from rwkv_cpu.convert import convert, main, tokenizer_blob, writer
from rwkv_cpu.convert.tokenizer_blob import choose_tokenizer
from rwkv_cpu.errors import ModelFormatError, RwkvArgumentError, UnsafePickleError, UnsupportedModelError

N_TINY = 12 * 22 + 4  # 22 tensors per layer, emb, ln_out x2, head; ln0 folded away
N_RANDOM = 3 * 22 + 4


def conv(src, out, **kw):
    kw.setdefault("progress", False)
    return convert(str(src), str(out), **kw)


def random_tokenizer():
    """The World vocab if this checkout has one, else none: these tests are about the tensors."""
    return world_vocab() or "none"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Every fixture converted from both layouts in both dtypes: {(fixture, layout, dtype): path}."""
    d = tmp_path_factory.mktemp("converted")
    out = {}
    for fx, name, tok in ((TINY, "tiny", None), (RANDOM, "random", random_tokenizer())):
        for layout, src in (("pth", os.path.join(fx, "model.pth")), ("hf", os.path.join(fx, "hf"))):
            for dtype in ("f16", "f32"):
                path = d / f"{name}-{layout}-{dtype}.rwkv"
                conv(src, path, dtype=dtype, tokenizer=tok)
                out[(name, layout, dtype)] = str(path)
    return out


# ---- layouts agree, values are right -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "random"])
@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_both_layouts_give_identical_tensors(outputs, name, dtype):
    head_a, ta = read_rwkv(outputs[(name, "pth", dtype)])
    head_b, tb = read_rwkv(outputs[(name, "hf", dtype)])
    assert list(ta) == list(tb)  # same names, same order
    for k in ta:
        assert ta[k] == tb[k], k  # dtype, shape, bytes
    skip = {"metadata", "metadata_size", "tokenizer_offset", "file_size", "data_offset"}
    assert {k: v for k, v in head_a.items() if k not in skip} == {k: v for k, v in head_b.items() if k not in skip}
    assert head_a["metadata"]["source_format"] == "pth" and head_b["metadata"]["source_format"] == "hf-safetensors"


def test_header_table_and_metadata(outputs):
    path = outputs[("tiny", "pth", "f16")]
    head, tensors = read_rwkv(path)
    assert head["magic"] == b"RWKVCPU\0" and head["version"] == 2 and head["header_size"] == 256
    assert (head["arch"], head["n_layer"], head["n_embd"], head["dim_att"], head["n_head"], head["head_size"],
            head["n_ffn"], head["n_vocab"]) == (52, 12, 64, 64, 8, 8, 256, 256)
    assert head["n_tensors"] == N_TINY == len(tensors)
    assert head["tokenizer_kind"] == 3 and head["tokenizer"] == b""
    assert head["file_size"] == os.path.getsize(path) and head["data_offset"] % 64 == 0
    assert list(tensors)[0] == "emb.weight" and list(tensors)[-1] == "head.weight"
    assert list(tensors)[1:4] == ["blocks.0.ln1.weight", "blocks.0.ln1.bias", "blocks.0.ln2.weight"]
    assert not any("ln0" in n for n in tensors)
    assert tensors["blocks.0.att.time_mix_k"][:2] == (0, (64,))  # (1,1,C) squeezed, f32
    assert tensors["blocks.0.att.time_decay"][:2] == (0, (8, 8))
    assert tensors["blocks.0.att.key.weight"][:2] == (1, (64, 64))
    assert tensors["blocks.0.ffn.value.weight"][:2] == (1, (64, 256))
    meta = head["metadata"]
    assert set(meta) >= {"converter", "source", "source_format", "dtype", "created"} and meta["dtype"] == "f16"


def _entries(path):
    import struct
    blob = open(path, "rb").read()
    data_offset = struct.unpack_from("<Q", blob, 96)[0]
    n = struct.unpack_from("<I", blob, 48)[0]
    return [struct.unpack_from("<QQ", blob, 256 + 128 * i + 104) for i in range(n)], data_offset


def test_alignment_and_no_overlap(outputs):
    for path in outputs.values():
        entries, data_offset = _entries(path)
        assert data_offset % 64 == 0
        end = 0
        for off, nbytes in entries:  # written in table order
            assert off % 64 == 0 and off >= end
            end = off + nbytes


def test_matrices_start_at_the_measured_page_phase(outputs):
    """Every matrix at 64 (mod 512) of the file (writer.MATRIX_PHASE: the phase that decoded 10% faster than 192
    on the development machine), the data region on a multiple of 512."""
    import struct
    for path in outputs.values():
        blob = open(path, "rb").read()
        data_offset = struct.unpack_from("<Q", blob, 96)[0]
        assert data_offset % writer.MATRIX_PHASE_MOD == 0
        n = struct.unpack_from("<I", blob, 48)[0]
        names = {}
        for i in range(n):
            e = 256 + 128 * i
            names[blob[e:e + 64].rstrip(b"\0").decode()] = struct.unpack_from("<Q", blob, e + 104)[0]
        mats = [k for k in names if k in ("emb.weight", "head.weight") or
                re.search(r"\.(key|value|receptance|output|gate)\.weight$", k)]
        assert len(mats) >= 2 + 7 * 3
        for k in mats:
            assert (data_offset + names[k]) % writer.MATRIX_PHASE_MOD == writer.MATRIX_PHASE, (path, k)


def test_values_against_numpy(outputs):
    """random-5v2 (bf16) converted from the .pth, checked against the safetensors values, by hand."""
    header, data = read_safetensors(os.path.join(RANDOM, "hf", "model.safetensors"))
    src = lambda n: safetensors_array(header, data, n)  # noqa: E731  float64, bf16 widened by hand
    _, t32 = read_rwkv(outputs[("random", "pth", "f32")])
    _, t16 = read_rwkv(outputs[("random", "pth", "f16")])

    emb, w, b = src("rwkv.embeddings.weight"), src("rwkv.blocks.0.pre_ln.weight"), src("rwkv.blocks.0.pre_ln.bias")
    mu = emb.mean(axis=1, keepdims=True)
    folded = (emb - mu) / np.sqrt(emb.var(axis=1, keepdims=True) + 1e-5) * w + b  # [V, C]
    np.testing.assert_allclose(rwkv_array(t32, "emb.weight"), folded.astype(np.float32), rtol=1e-6, atol=1e-6)

    for i in range(3):
        td = src(f"rwkv.blocks.{i}.attention.time_decay")  # [H, N]
        np.testing.assert_allclose(rwkv_array(t32, f"blocks.{i}.att.time_decay"),
                                   np.exp(-np.exp(td)).astype(np.float32), rtol=1e-7, atol=0)
        np.testing.assert_array_equal(rwkv_array(t32, f"blocks.{i}.att.time_faaaa"),
                                      src(f"rwkv.blocks.{i}.attention.time_faaaa"))
        np.testing.assert_array_equal(rwkv_array(t32, f"blocks.{i}.att.time_mix_g"),
                                      src(f"rwkv.blocks.{i}.attention.time_mix_gate").reshape(-1))
        np.testing.assert_array_equal(rwkv_array(t32, f"blocks.{i}.ffn.key.weight"),
                                      src(f"rwkv.blocks.{i}.feed_forward.key.weight"))  # bf16 -> f32 exact
    np.testing.assert_array_equal(rwkv_array(t32, "head.weight"), src("head.weight"))
    # an f16 file holds the f32 file's values rounded to nearest-even, and the same vectors
    for name, (dtype, _shape, _raw) in t16.items():
        want = rwkv_array(t32, name)
        np.testing.assert_array_equal(rwkv_array(t16, name), want.astype(np.float16) if dtype == 1 else want)


def test_f16_is_about_half_of_f32(outputs):
    for name in ("tiny", "random"):
        _, t16 = read_rwkv(outputs[(name, "pth", "f16")])
        _, t32 = read_rwkv(outputs[(name, "pth", "f32")])
        mat16 = sum(len(raw) for d, _s, raw in t16.values() if d == 1)
        for n in t16:
            d16, shape, raw16 = t16[n]
            if d16 == 1:
                assert len(t32[n][2]) == 2 * len(raw16)
            else:
                assert t32[n][2] == raw16
        s16, s32 = os.path.getsize(outputs[(name, "pth", "f16")]), os.path.getsize(outputs[(name, "pth", "f32")])
        assert s16 < s32 and abs((s32 - s16) - mat16) < 64 * len(t16)  # up to alignment padding


def test_chunked_equals_whole(tmp_path, monkeypatch, outputs):
    """Streaming in tiny row chunks gives the same bytes as big chunks (transforms are row-wise)."""
    monkeypatch.setattr(writer, "CHUNK_BYTES", 3000)
    out = tmp_path / "chunked.rwkv"
    conv(os.path.join(RANDOM, "model.pth"), out, dtype="f16", tokenizer=random_tokenizer())
    assert read_rwkv(str(out))[1] == read_rwkv(outputs[("random", "pth", "f16")])[1]


def test_c_library_loads_the_files(outputs):
    from rwkv_cpu._ffi import check, ffi, lib
    for key, path in outputs.items():
        m = ffi.new("rwkv_model**")
        check(lib.rwkv_model_load(path.encode(), 1, m))
        info = ffi.new("rwkv_model_info*")
        check(lib.rwkv_model_get_info(m[0], info))
        assert info.n_tensors == (N_TINY if key[0] == "tiny" else N_RANDOM) and info.arch == 52
        lib.rwkv_model_free(m[0])


# ---- sources: shards, single files, HF bin --------------------------------------------------------------
def test_sharded_hf_directory(tmp_path, outputs):
    from test_checkpoint_readers import split_safetensors

    d = tmp_path / "sharded"
    d.mkdir()
    shutil.copy(os.path.join(TINY, "hf", "config.json"), d)
    split_safetensors(os.path.join(TINY, "hf", "model.safetensors"), d, 3)
    s = conv(d, tmp_path / "out.rwkv", dtype="f32")
    assert s["source_format"] == "hf-safetensors" and s["n_tensors"] == N_TINY
    assert read_rwkv(str(tmp_path / "out.rwkv"))[1] == read_rwkv(outputs[("tiny", "pth", "f32")])[1]


def _tiny_arrays():
    """The tiny model's tensors as float32 numpy arrays, with their HF names."""
    header, data = read_safetensors(os.path.join(TINY, "hf", "model.safetensors"))
    header.pop("__metadata__", None)
    return {n: safetensors_array(header, data, n).astype(np.float32) for n in header}


def test_hf_bin_directory_with_shards(tmp_path, outputs):
    arrays = _tiny_arrays()
    names = sorted(arrays)
    d = tmp_path / "hfbin"
    d.mkdir()
    weight_map = {}
    for k, part in enumerate((names[:100], names[100:])):
        fname = f"pytorch_model-0000{k + 1}-of-00002.bin"
        write_pth(str(d / fname), {n: (arrays[n], "F32") for n in part})
        weight_map.update({n: fname for n in part})
    (d / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    s = conv(d, tmp_path / "out.rwkv", dtype="f32")
    assert s["source_format"] == "hf-bin"
    assert read_rwkv(str(tmp_path / "out.rwkv"))[1] == read_rwkv(outputs[("tiny", "pth", "f32")])[1]


def test_single_safetensors_file_either_naming(tmp_path, outputs):
    s = conv(os.path.join(TINY, "hf", "model.safetensors"), tmp_path / "a.rwkv", dtype="f32")
    assert s["source_format"] == "safetensors" and s["naming"] == "hf"
    # the same values under BlinkDL names, in a safetensors file
    from rwkv_cpu.convert.hf import hf_to_blinkdl

    header, data = read_safetensors(os.path.join(TINY, "hf", "model.safetensors"))
    renamed = {(hf_to_blinkdl(n) if n != "__metadata__" else n): e for n, e in header.items()}
    write_safetensors_raw(str(tmp_path / "blink.safetensors"), renamed, data)
    s = conv(tmp_path / "blink.safetensors", tmp_path / "b.rwkv", dtype="f32")
    assert s["naming"] == "blinkdl"
    want = read_rwkv(outputs[("tiny", "pth", "f32")])[1]
    assert read_rwkv(str(tmp_path / "a.rwkv"))[1] == want == read_rwkv(str(tmp_path / "b.rwkv"))[1]


# ---- refusals ----------------------------------------------------------------------------------------
def evil_pth(path, module: str, name: str, command: str, after_tensors: bool = False) -> None:
    """A .pth whose pickle calls module.name(command) when loaded with torch.load / pickle.load."""
    call = p_global(module, name) + p_str(command) + b"\x85R"
    if after_tensors:  # hidden among real-looking tensors, as a dict value
        good = tensor_pickle([("emb.weight", "F32", "0", 4, (2, 2), (2, 1), 0)])
        pkl = good[:-1] + p_str("x") + call + b"s."  # after SETITEMS: SETITEM "x" = call(...)
    else:
        pkl = b"\x80\x02" + call + b"."
    write_zip(path, {"archive/data.pkl": pkl, "archive/byteorder": b"little", "archive/data/0": b"\0" * 16})


@pytest.mark.parametrize("after_tensors", [False, True])
def test_pth_calling_os_system_is_refused_and_not_run(tmp_path, after_tensors):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pth"
    evil_pth(str(src), "os", "system", f"touch {marker}", after_tensors)
    out = tmp_path / "out.rwkv"
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        conv(src, out)
    assert not marker.exists() and not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["evil.pth"]


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("subprocess", "Popen"), ("builtins", "exec"),
                                         ("nt", "system"), ("runpy", "_run_code"), ("shutil", "rmtree")])
def test_other_globals_refused(tmp_path, module, name):
    src = tmp_path / "evil.pth"
    evil_pth(str(src), module, name, "print(1)")
    with pytest.raises(UnsafePickleError, match=rf"{module}\.{name}"):
        conv(src, tmp_path / "out.rwkv")


@pytest.mark.parametrize("src", [os.path.join(TINY4, "model.pth"), os.path.join(TINY4, "hf"),
                                 os.path.join(TINY4, "hf", "model.safetensors")])
def test_rwkv4_converts_from_every_layout(tmp_path, src):
    s = conv(src, tmp_path / "out.rwkv")
    assert s["arch"] == "v4" and s["dims"]["n_head"] == 1 and s["dims"]["head_size"] == 128
    assert read_rwkv(str(tmp_path / "out.rwkv"))[0]["arch"] == 40


@pytest.mark.parametrize("tensors,message", [
    ({"blocks.0.att.ln_x.weight": (8,), "blocks.0.att.time_decay": (2,)},
     "an RWKV-5.0 checkpoint (blocks.0.att.time_decay [2] and no gate)"),
    ({"blocks.0.att.ln_x.weight": (8,), "blocks.0.att.time_decay": (2,), "blocks.0.att.gate.weight": (8, 8)},
     "an RWKV-5.1 checkpoint (blocks.0.att.time_decay [2] and blocks.0.att.gate.weight [8, 8])"),
    ({"blocks.0.att.time_maa_x": (1, 1, 8)}, "an RWKV-6 checkpoint (blocks.0.att.time_maa_x [1, 1, 8])"),
    ({"blocks.0.att.r_k": (2, 4)}, "an RWKV-7 checkpoint (blocks.0.att.r_k [2, 4])"),
    ({"model.layers.0.attn.r_k": (2, 4), "model.embeddings.weight": (4, 8)},
     "an RWKV-7 checkpoint (blocks.0.att.r_k [2, 4])"),
])
def test_incomplete_checkpoints_say_what_they_were_taken_for(tmp_path, tensors, message):
    src = tmp_path / "m.pth"
    arrays = {"emb.weight": (np.zeros((4, 8), np.float32), "F32")} if "model.embeddings.weight" not in tensors else {}
    arrays.update({n: (np.zeros(s, np.float32), "F32") for n, s in tensors.items()})
    write_pth(str(src), arrays)
    with pytest.raises(ModelFormatError, match=r"tensor blocks\.0\.\S+ is missing .*; this looks like " +
                       re.escape(message)):
        conv(src, tmp_path / "out.rwkv")


def test_not_rwkv_at_all(tmp_path):
    src = tmp_path / "m.pth"
    write_pth(str(src), {"encoder.weight": (np.zeros(4, np.float32), "F32")})
    with pytest.raises(ModelFormatError, match="does not look like an RWKV checkpoint.*encoder.weight"):
        conv(src, tmp_path / "out.rwkv")


def test_legacy_pth_refused(tmp_path):
    src = tmp_path / "old.pth"
    src.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.")
    with pytest.raises(UnsupportedModelError, match="unsupported legacy"):
        conv(src, tmp_path / "out.rwkv")


def edited_tiny(tmp_path, edit):
    """A copy of tiny-5v2's hf/model.safetensors with its header (and maybe data) edited."""
    header, data = read_safetensors(os.path.join(TINY, "hf", "model.safetensors"))
    data = bytearray(data)
    edit(header, data)
    p = tmp_path / "edited.safetensors"
    write_safetensors_raw(str(p), header, bytes(data))
    return p


def test_missing_tensor_is_named(tmp_path):
    src = edited_tiny(tmp_path, lambda h, d: h.pop("rwkv.blocks.3.attention.gate.weight"))
    with pytest.raises(ModelFormatError, match=r"tensor blocks\.3\.att\.gate\.weight is missing "
                                               r"\(expected shape \[64, 64\]"):
        conv(src, tmp_path / "out.rwkv")


def test_missing_tensor_that_tells_the_version(tmp_path):
    src = edited_tiny(tmp_path, lambda h, d: h.pop("rwkv.blocks.0.attention.time_decay"))
    with pytest.raises(ModelFormatError, match=r"tensor blocks\.0\.att\.time_decay is missing"):
        conv(src, tmp_path / "out.rwkv")
    src = edited_tiny(tmp_path, lambda h, d: h.pop("rwkv.embeddings.weight"))
    with pytest.raises(ModelFormatError, match=r"tensor emb\.weight is missing \(it gives V and C\)"):
        conv(src, tmp_path / "out.rwkv")


def test_missing_layer_is_named(tmp_path):
    def edit(h, d):
        for n in [n for n in h if n.startswith("rwkv.blocks.5.")]:
            del h[n]
    with pytest.raises(ModelFormatError, match=r"tensor blocks\.5\.ln1\.weight is missing"):
        conv(edited_tiny(tmp_path, edit), tmp_path / "out.rwkv")


@pytest.mark.parametrize("name,shape,blink,want", [
    ("rwkv.blocks.2.attention.key.weight", [32, 128], "blocks.2.att.key.weight", "[64, 64]"),
    ("rwkv.blocks.7.attention.ln_x.bias", [2, 32], "blocks.7.att.ln_x.bias", "[64]"),
    ("rwkv.blocks.4.attention.time_decay", [4, 16], "blocks.4.att.time_decay", "[8, 8]"),
    ("head.weight", [128, 128], "head.weight", "[256, 64]"),
])
def test_wrong_shape_names_tensor_and_both_shapes(tmp_path, name, shape, blink, want):
    src = edited_tiny(tmp_path, lambda h, d: h[name].update(shape=shape))
    with pytest.raises(ModelFormatError, match=re.escape(f"tensor {blink} has shape {shape}, expected {want}")):
        conv(src, tmp_path / "out.rwkv")


def test_unexpected_tensor_is_named(tmp_path):
    def edit(h, d):
        h["rwkv.blocks.0.attention.time_state"] = {"dtype": "F32", "shape": [8, 8, 8],
                                                    "data_offsets": [len(d), len(d) + 2048]}
        d.extend(bytes(2048))
    with pytest.raises(ModelFormatError, match=r"unexpected tensor\(s\) for v5\.2: blocks\.0\.att\.time_state"):
        conv(edited_tiny(tmp_path, edit), tmp_path / "out.rwkv")


def _poke(header, data, name, index, value):
    b, _e = header[name]["data_offsets"]
    np.frombuffer(data, dtype="<f4", count=1, offset=b + 4 * index)  # bounds check
    data[b + 4 * index:b + 4 * index + 4] = np.float32(value).tobytes()


def test_integer_weights_refused(tmp_path):
    def edit(h, d):
        h["rwkv.ln_out.bias"]["dtype"] = "I32"
    with pytest.raises(ModelFormatError, match=r"tensor ln_out\.bias has dtype I32"):
        conv(edited_tiny(tmp_path, edit), tmp_path / "out.rwkv")


def test_f16_overflow_is_refused_not_clamped(tmp_path):
    src = edited_tiny(tmp_path, lambda h, d: _poke(h, d, "rwkv.blocks.1.feed_forward.key.weight", 7, 1e5))
    with pytest.raises(ModelFormatError, match=r"blocks\.1\.ffn\.key\.weight has values up to 100000.*--dtype f32"):
        conv(src, tmp_path / "out.rwkv", dtype="f16")
    assert not (tmp_path / "out.rwkv").exists()
    conv(src, tmp_path / "out.rwkv", dtype="f32")  # f32 holds it
    assert rwkv_array(read_rwkv(str(tmp_path / "out.rwkv"))[1], "blocks.1.ffn.key.weight").max() == 1e5


def test_f16_max_rounds_but_fits(tmp_path):
    """65519 rounds to 65504 (nearest even), which f16 holds: accepted."""
    src = edited_tiny(tmp_path, lambda h, d: _poke(h, d, "head.weight", 0, 65519.0))
    conv(src, tmp_path / "out.rwkv", dtype="f16")
    assert rwkv_array(read_rwkv(str(tmp_path / "out.rwkv"))[1], "head.weight")[0, 0] == 65504


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_refused(tmp_path, value):
    src = edited_tiny(tmp_path, lambda h, d: _poke(h, d, "rwkv.blocks.0.attention.time_faaaa", 3, value))
    with pytest.raises(ModelFormatError, match=r"blocks\.0\.att\.time_faaaa holds 1 NaN or infinite"):
        conv(src, tmp_path / "out.rwkv", dtype="f32")


# ---- atomic output -----------------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch, exc, existing):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "model.rwkv"
    if existing:
        out.write_bytes(b"previous model")
    real = writer.write_tensor
    calls = []

    def failing(f, slot):
        calls.append(slot.tensor.name)
        if len(calls) == 40:
            raise exc
        real(f, slot)

    monkeypatch.setattr(writer, "write_tensor", failing)
    with pytest.raises(type(exc)):
        conv(os.path.join(TINY, "model.pth"), out)
    assert len(calls) == 40
    assert os.listdir(out_dir) == (["model.rwkv"] if existing else [])
    if existing:
        assert out.read_bytes() == b"previous model"


def test_sigterm_during_cli_conversion_leaves_nothing(tmp_path, monkeypatch):
    import signal

    real = writer.write_tensor

    def killed(f, slot):
        if slot.tensor.name == "blocks.2.ln1.weight":
            os.kill(os.getpid(), signal.SIGTERM)
        real(f, slot)

    monkeypatch.setattr(writer, "write_tensor", killed)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        main([os.path.join(TINY, "model.pth"), str(tmp_path / "m.rwkv"), "--quiet"])
    assert e.value.code == 128 + signal.SIGTERM and os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_output_directory_missing(tmp_path):
    from rwkv_cpu.errors import RwkvIOError

    with pytest.raises(RwkvIOError, match="cannot create a file"):
        conv(os.path.join(TINY, "model.pth"), tmp_path / "no" / "such" / "dir.rwkv")


# ---- tokenizer ---------------------------------------------------------------------------------------
def _linked_checkpoint(tmp_path, fixture):
    d = tmp_path / "ckpt"
    d.mkdir()
    os.symlink(os.path.join(fixture, "model.pth"), d / "model.pth")
    return d


def test_world_vocab_next_to_checkpoint(tmp_path):
    d = _linked_checkpoint(tmp_path, RANDOM)
    vocab = "1 '\\x00' 1\n2 'a' 1\n65529 b'\\xe4\\xb8' 2\n"
    (d / "rwkv_vocab_v20230424.txt").write_text(vocab)
    s = conv(d / "model.pth", tmp_path / "out.rwkv")
    head, _ = read_rwkv(str(tmp_path / "out.rwkv"))
    assert s["tokenizer"] == "world" and head["tokenizer_kind"] == 1 and head["tokenizer"] == vocab.encode()


def test_world_vocab_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenizer_blob, "package_world_vocab", lambda: str(tmp_path / "nowhere.txt"))
    d = _linked_checkpoint(tmp_path, RANDOM)
    with pytest.raises(RwkvArgumentError, match="rwkv_vocab_v20230424.txt.*--tokenizer PATH"):
        conv(d / "model.pth", tmp_path / "out.rwkv")
    s = conv(d / "model.pth", tmp_path / "out.rwkv", tokenizer="none")
    assert s["tokenizer"] == "none" and read_rwkv(str(tmp_path / "out.rwkv"))[0]["tokenizer_kind"] == 0


def test_real_world_vocab_embedded_verbatim(tmp_path):
    vocab = world_vocab()
    conv(os.path.join(RANDOM, "hf"), tmp_path / "out.rwkv", tokenizer=vocab)
    head, _ = read_rwkv(str(tmp_path / "out.rwkv"))
    assert head["tokenizer_kind"] == 1 and head["tokenizer"] == open(vocab, "rb").read()


def test_package_world_vocab_used_by_default(tmp_path):
    assert os.path.isfile(tokenizer_blob.package_world_vocab())
    s = conv(os.path.join(RANDOM, "model.pth"), tmp_path / "out.rwkv")
    assert s["tokenizer"] == "world"


def test_hf_json_tokenizer(tmp_path):
    import tokenizers
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "b": 1, "<unk>": 2}, unk_token="<unk>"))
    path = tmp_path / "tok.json"
    path.write_text(tok.to_str())
    conv(os.path.join(TINY, "model.pth"), tmp_path / "out.rwkv", tokenizer=str(path))
    head, _ = read_rwkv(str(tmp_path / "out.rwkv"))
    assert head["tokenizer_kind"] == 2 and head["tokenizer"] == path.read_bytes()
    (tmp_path / "bad.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(ModelFormatError, match="not a tokenizers JSON"):
        conv(os.path.join(TINY, "model.pth"), tmp_path / "out.rwkv", tokenizer=str(tmp_path / "bad.json"))


def test_tokenizer_must_fit_the_model(tmp_path):
    (tmp_path / "v.txt").write_text("1 'a' 1\n300 'b' 1\n")
    with pytest.raises(ModelFormatError, match="token id 300 does not fit the model's 256 tokens"):
        conv(os.path.join(TINY, "model.pth"), tmp_path / "out.rwkv", tokenizer=str(tmp_path / "v.txt"))
    (tmp_path / "v.txt").write_text("1 a 1\n")
    with pytest.raises(ModelFormatError, match="not a World vocab line"):
        conv(os.path.join(TINY, "model.pth"), tmp_path / "out.rwkv", tokenizer=str(tmp_path / "v.txt"))


def test_tokenizer_defaults():
    assert choose_tokenizer(None, 256, []).kind == 3
    assert choose_tokenizer(None, 50277, []).kind == 2  # GPT-NeoX 20B (RWKV-4 Pile, Raven)
    assert choose_tokenizer("20b", 65536, []).data == choose_tokenizer(None, 50277, []).data
    with pytest.raises(RwkvArgumentError, match="50000 tokens.*--tokenizer"):
        choose_tokenizer(None, 50000, [])
    with pytest.raises(RwkvArgumentError, match="needs 256"):
        choose_tokenizer("bytes", 100, [])


# ---- CLI ---------------------------------------------------------------------------------------------
def test_cli(tmp_path, capsys):
    out = tmp_path / "m.rwkv"
    assert main([os.path.join(TINY, "model.pth"), str(out), "--dtype", "f32", "--progress"]) == 0
    err = capsys.readouterr().err
    assert f"[1/{N_TINY}] emb.weight [256, 64] f32" in err and f"[{N_TINY}/{N_TINY}] head.weight" in err
    assert "MB written" in err and "wrote " in err
    assert read_rwkv(str(out))[0]["metadata"]["dtype"] == "f32"
    assert main([os.path.join(TINY4, "tokens.json"), str(tmp_path / "x.rwkv"), "--quiet"]) == 1
    assert "rwkv-cpu convert: error: " in capsys.readouterr().err and not (tmp_path / "x.rwkv").exists()
    with pytest.raises(SystemExit):
        main([os.path.join(TINY, "model.pth"), str(out), "--dtype", "q3"])  # q4 is a type since the quantization work


def test_summary(tmp_path):
    s = conv(os.path.join(TINY, "hf"), tmp_path / "m.rwkv")
    assert s["arch"] == "v5.2" and s["n_tensors"] == N_TINY and s["bytes"] == os.path.getsize(tmp_path / "m.rwkv")
    assert s["dims"] == {"n_layer": 12, "n_embd": 64, "dim_att": 64, "n_head": 8, "head_size": 8, "n_ffn": 256,
                         "n_vocab": 256}
    assert s["seconds"] >= 0 and s["source_format"] == "hf-safetensors"
