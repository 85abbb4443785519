"""Every RWKV generation besides v5.2 (tested in test_model.py): v4, v5.0, v5.1, v6 and v7 against the
official implementation's logits and states, in both checkpoint layouts, and their converter tables."""
from __future__ import annotations

import json
import os
import re
import struct

import numpy as np
import pytest

import rwkv_cpu
from ckpt_helpers import read_rwkv, read_safetensors, rwkv_array, write_safetensors_raw
from conftest import VERSION_FIXTURES, fixture_dir, reference
from rwkv_cpu.convert import convert
from rwkv_cpu.convert.arch import MATRIX, SPECS
from rwkv_cpu.errors import ModelFormatError

ATOL_F32 = 1e-4  # fp32 compute on the same weights: only the summation order differs
NAMES = list(VERSION_FIXTURES)
# one fixture per version, for the tests that need only one
ONE_PER_VERSION = ["random-4v0", "random-5v0", "random-5v1", "random-6v0", "random-7v0"]


def conv(src, out, **kw):
    kw.setdefault("progress", False)
    return convert(str(src), str(out), **kw)


# ---- against the reference ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["pth", "hf"])
@pytest.mark.parametrize("name", NAMES)
def test_logits_and_state_match_reference(converted, name, layout):
    ids, ref_logits, ref_state = reference(name)
    model = rwkv_cpu.Model(converted(name, layout))
    assert model.arch == VERSION_FIXTURES[name]
    logits, state = model.forward(ids, all_logits=True)
    assert logits.shape == ref_logits.shape
    assert np.abs(logits - ref_logits).max() <= ATOL_F32
    np.testing.assert_array_equal(logits.argmax(1), ref_logits.argmax(1))
    got = state.to_dict()
    assert sorted(got) == sorted(ref_state)
    for k, v in ref_state.items():
        assert got[k].shape == v.shape, k
        np.testing.assert_allclose(got[k], v, atol=ATOL_F32, rtol=1e-4, err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_both_layouts_give_the_same_file_contents(converted, name):
    _, a = read_rwkv(converted(name, "pth"))
    _, b = read_rwkv(converted(name, "hf"))
    assert list(a) == list(b)  # same tensors, same order
    for k in a:
        assert a[k] == b[k], k  # dtype, shape, bytes


@pytest.mark.parametrize("name", ONE_PER_VERSION)
def test_f16_weights_stay_close(converted, name):
    # f16 rounds each big matrix to 11 significant bits; LoRA matrices and vectors stay f32
    ids, ref_logits, _ = reference(name)
    logits, _ = rwkv_cpu.Model(converted(name, "pth", "f16")).forward(ids, all_logits=True)
    assert np.abs(logits - ref_logits).max() < 0.05
    assert (logits.argmax(1) == ref_logits.argmax(1)).mean() >= 0.95


# ---- evaluation modes --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_sequence_equals_token_by_token(converted, name):
    # 77 tokens: the sequence crosses an evaluation chunk (64 tokens)
    ids, _, _ = reference(name)
    model = rwkv_cpu.Model(converted(name))
    seq_logits, seq_state = model.forward(ids, all_logits=True)
    state = model.new_state()
    for t, tok in enumerate(ids):
        logits, state = model.forward(tok, state)
        np.testing.assert_allclose(logits, seq_logits[t], atol=1e-5, rtol=0)
    np.testing.assert_allclose(state.to_numpy(), seq_state.to_numpy(), atol=1e-5, rtol=1e-6)
    # and in uneven pieces
    state = model.new_state()
    for i in range(0, len(ids), 13):
        part, state = model.forward(ids[i:i + 13], state, all_logits=True)
        np.testing.assert_allclose(part, seq_logits[i:i + 13], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ONE_PER_VERSION)
def test_batch_equals_one_at_a_time(converted, name):
    model = rwkv_cpu.Model(converted(name))
    prompts = [[1, 2, 3], [40, 5], [200, 7, 8, 9], [33], [100, 101, 102, 103, 104]]
    states = [model.forward(p)[1] for p in prompts]
    states.append(model.new_state())  # a fresh sequence beside continued ones
    solo = [s.copy() for s in states]
    nxt = [10, 20, 30, 40, 50, 60]
    batch_logits = model.forward_batch(nxt, states)
    for i, tok in enumerate(nxt):
        logits, solo[i] = model.forward(tok, solo[i])
        np.testing.assert_allclose(batch_logits[i], logits, atol=1e-5, rtol=0)
        np.testing.assert_allclose(states[i].to_numpy(), solo[i].to_numpy(), atol=1e-5, rtol=1e-6)


def test_threads_give_identical_results(converted):
    for name in ("random-4v0", "random-6v0", "random-7v0"):
        ids, _, _ = reference(name)
        one = rwkv_cpu.Model(converted(name), n_threads=1)
        three = rwkv_cpu.Model(converted(name), n_threads=3)
        np.testing.assert_array_equal(one.forward(ids, all_logits=True)[0], three.forward(ids, all_logits=True)[0])


# ---- states ------------------------------------------------------------------------------------------
def test_state_of_another_version_is_refused(converted):
    names = ["random-4v0", "random-5v0", "random-5v1", "random-5v2", "random-6v0", "random-7v0"]
    models = {n: rwkv_cpu.Model(converted(n)) for n in names}
    for a in names:
        for b in names:
            state = models[b].new_state()
            if a == b:
                models[a].forward([1], state)
                continue
            before = state.to_numpy()
            with pytest.raises(rwkv_cpu.StateMismatchError, match="another model"):
                models[a].forward([1], state)
            with pytest.raises(rwkv_cpu.StateMismatchError):
                models[a].forward_batch([1], [state])
            np.testing.assert_array_equal(state.to_numpy(), before)


def test_v5_variants_refuse_each_others_states_by_name(converted):
    v50, v51 = rwkv_cpu.Model(converted("random-5v0")), rwkv_cpu.Model(converted("random-5v1"))
    assert v50.state_size == v51.state_size  # same dimensions: only the architecture tells them apart
    with pytest.raises(rwkv_cpu.StateMismatchError, match=r"architecture v5\.0 vs v5\.1"):
        v50.forward([1], v51.new_state())


def test_v4_state_starts_with_pp_at_minus_1e30(converted):
    model = rwkv_cpu.Model(converted("random-4v0"))
    s = model.new_state().to_dict()
    for i in range(model.n_layer):
        assert np.all(s[f"blocks.{i}.att_pp"] == np.float32(-1e30))
        for k in ("att_x_prev", "att_aa", "att_bb", "ffn_x_prev"):
            assert not np.any(s[f"blocks.{i}.{k}"])
    assert model.state_size == model.n_layer * (2 * model.n_embd + 3 * model.dim_att)
    _, st = model.forward([5, 6])
    st.reset()
    np.testing.assert_array_equal(st.to_numpy(), model.new_state().to_numpy())


@pytest.mark.parametrize("name,entries", [
    ("random-4v0", ["att_x_prev", "att_aa", "att_bb", "att_pp", "ffn_x_prev"]),
    ("random-5v0", ["att_x_prev", "att_kv", "ffn_x_prev"]),
    ("random-6v0", ["att_x_prev", "att_kv", "ffn_x_prev"]),
    ("random-7v0", ["att_x_prev", "att_vk", "ffn_x_prev"]),
])
def test_state_layout_names(converted, name, entries):
    model = rwkv_cpu.Model(converted(name))
    d = model.new_state().to_dict()
    assert sorted(d) == sorted(f"blocks.{i}.{e}" for i in range(model.n_layer) for e in entries)
    assert sum(v.size for v in d.values()) == model.state_size


# ---- the converter's tables --------------------------------------------------------------------------
def test_every_version_has_a_table_and_quantizable_flags():
    assert sorted(SPECS) == ["v4", "v5.0", "v5.1", "v5.2", "v6", "v7"]
    for version, spec in SPECS.items():
        for row in spec.table:
            assert row.quantizable == (row.kind == MATRIX), (version, row.pattern)
    quantizable = {r.pattern for r in SPECS["v7"].table if r.quantizable}
    assert "blocks.{i}.att.key.weight" in quantizable and "head.weight" in quantizable
    assert "blocks.{i}.att.w1" not in quantizable and "blocks.{i}.att.r_k" not in quantizable


@pytest.mark.parametrize("name,tensor,shape", [
    ("random-6v0", "blocks.0.att.time_maa_w1", (5 * 16, 128)),   # checkpoint [C, 5*Dm]
    ("random-6v0", "blocks.2.att.time_maa_w2", (5, 128, 16)),    # checkpoint [5, Dm, C]
    ("random-6v0", "blocks.1.att.time_decay_w1", (32, 128)),     # checkpoint [C, Dd]
    ("random-6v0", "blocks.1.att.time_decay_w2", (128, 32)),     # checkpoint [Dd, A]
    ("random-7v0", "blocks.0.att.w1", (32, 128)),
    ("random-7v0", "blocks.1.att.a2", (128, 24)),
    ("random-7v0", "blocks.2.att.v1", (16, 128)),
    ("random-7v0", "blocks.0.att.g2", (128, 48)),
])
def test_lora_matrices_are_stored_f32_out_by_in(converted, name, tensor, shape):
    for dtype in ("f16", "f32"):
        _, tensors = read_rwkv(converted(name, "pth", dtype))
        assert tensors[tensor][0] == 0 and tensors[tensor][1] == shape  # f32 whatever --dtype says


def _pth_values(name):
    """The fixture's checkpoint values by BlinkDL name (read with the converter's own torch-free reader)."""
    from rwkv_cpu.convert import open_checkpoint
    with open_checkpoint(os.path.join(fixture_dir(name), "model.pth")) as ckpt:
        return {k: np.asarray(t.rows(), dtype=np.float64).reshape(t.shape) for k, t in ckpt.tensors.items()}


def test_time_parameters_are_stored_transformed(converted):
    """docs/FILE_FORMAT.md: v4 time_decay -> -exp(x); v5.0 time_decay -> exp(-exp(x)) and time_first ->
    exp(x), stored as time_faaaa; v6 LoRA matrices transposed. Computed in float64, rounded to f32 once."""
    src = _pth_values("random-4v0")
    _, t = read_rwkv(converted("random-4v0"))
    np.testing.assert_array_equal(rwkv_array(t, "blocks.1.att.time_decay"),
                                  (-np.exp(src["blocks.1.att.time_decay"])).astype(np.float32))
    np.testing.assert_array_equal(rwkv_array(t, "blocks.1.att.time_first"),
                                  src["blocks.1.att.time_first"].astype(np.float32))
    src = _pth_values("random-5v0")
    _, t = read_rwkv(converted("random-5v0"))
    assert "blocks.0.att.time_first" not in t and "blocks.0.att.gate.weight" not in t
    np.testing.assert_array_equal(rwkv_array(t, "blocks.2.att.time_faaaa"),
                                  np.exp(src["blocks.2.att.time_first"]).astype(np.float32))
    np.testing.assert_array_equal(rwkv_array(t, "blocks.2.att.time_decay"),
                                  np.exp(-np.exp(src["blocks.2.att.time_decay"])).astype(np.float32))
    src = _pth_values("random-6v0")
    _, t = read_rwkv(converted("random-6v0"))
    np.testing.assert_array_equal(rwkv_array(t, "blocks.1.att.time_maa_w2"),
                                  np.swapaxes(src["blocks.1.att.time_maa_w2"], 1, 2).astype(np.float32))


def test_v5_0_with_time_faaaa_uses_it_as_is(tmp_path, converted):
    """Some 5.0 checkpoints carry the bonus as time_faaaa (already u); the official loader uses it raw.
    Writing exp(time_first) there must give the same model as the time_first checkpoint."""
    header, data = read_safetensors(os.path.join(fixture_dir("random-5v0"), "hf", "model.safetensors"))
    data = bytearray(data)
    src = _pth_values("random-5v0")
    for i in range(3):
        old = f"rwkv.blocks.{i}.attention.time_first"
        e = header.pop(old)
        u = np.exp(src[f"blocks.{i}.att.time_first"]).astype(np.float32)
        header[f"rwkv.blocks.{i}.attention.time_faaaa"] = {"dtype": "F32", "shape": [4],
                                                          "data_offsets": [len(data), len(data) + 16]}
        data.extend(u.tobytes())
        assert e["shape"] == [4]
    p = tmp_path / "faaaa.safetensors"
    write_safetensors_raw(str(p), header, bytes(data))
    s = conv(p, tmp_path / "m.rwkv", dtype="f32")
    assert s["arch"] == "v5.0"
    ids, ref_logits, _ = reference("random-5v0")
    logits, _ = rwkv_cpu.Model(str(tmp_path / "m.rwkv")).forward(ids, all_logits=True)
    np.testing.assert_array_equal(logits, rwkv_cpu.Model(converted("random-5v0")).forward(ids, all_logits=True)[0])


def test_v7_layer0_value_residual_is_optional_and_unused(converted):
    """BlinkDL v7 checkpoints carry v0/v1/v2 in block 0 (unused); fla's layer 0 has no v_lora. Both
    convert, to the same file, without them."""
    names = set(read_rwkv(converted("random-7v0", "pth"))[1])
    assert "blocks.0.att.v0" not in names and "blocks.1.att.v0" in names and "blocks.2.att.v2" in names
    ckpt = _pth_values("random-7v0")
    assert "blocks.0.att.v1" in ckpt
    hf, _ = read_safetensors(os.path.join(fixture_dir("random-7v0"), "hf", "model.safetensors"))
    assert not any(k.startswith("model.layers.0.attn.v_lora") for k in hf)


# ---- refusals ----------------------------------------------------------------------------------------
def _edited_hf(tmp_path, name, edit):
    header, data = read_safetensors(os.path.join(fixture_dir(name), "hf", "model.safetensors"))
    data = bytearray(data)
    edit(header, data)
    p = tmp_path / f"{name}.safetensors"
    write_safetensors_raw(str(p), header, bytes(data))
    return p


@pytest.mark.parametrize("name,hf_name,blink", [
    ("random-4v0", "rwkv.blocks.2.attention.time_first", "blocks.2.att.time_first"),
    ("random-5v0", "rwkv.blocks.1.feed_forward.receptance.weight", "blocks.1.ffn.receptance.weight"),
    ("random-5v1", "rwkv.blocks.2.attention.gate.weight", "blocks.2.att.gate.weight"),
    ("random-6v0", "rwkv.blocks.1.attention.time_decay_w2", "blocks.1.att.time_decay_w2"),
    ("random-6v0", "rwkv.blocks.2.attention.time_maa_g", "blocks.2.att.time_maa_g"),
    ("random-7v0", "model.layers.2.attn.v_lora.lora.2.bias", "blocks.2.att.v0"),
    ("random-7v0", "model.layers.1.attn.g_lora.lora.0.weight", "blocks.1.att.g1"),
    ("random-7v0", "model.layers.0.attn.r_k", "blocks.0.att.r_k"),
    ("random-7v0", "model.layers.1.ffn.x_k", "blocks.1.ffn.x_k"),
])
def test_missing_tensor_is_named(tmp_path, name, hf_name, blink):
    src = _edited_hf(tmp_path, name, lambda h, d: h.pop(hf_name))
    with pytest.raises(ModelFormatError, match=rf"tensor {re.escape(blink)} is missing"):
        conv(src, tmp_path / "out.rwkv")
    assert not (tmp_path / "out.rwkv").exists()


@pytest.mark.parametrize("name,hf_name,shape,blink,want", [
    ("random-4v0", "rwkv.blocks.1.attention.time_decay", [2, 64], "blocks.1.att.time_decay", "[128]"),
    ("random-5v1", "rwkv.blocks.0.attention.time_faaaa", [2, 2], "blocks.0.att.time_faaaa", "[4]"),
    ("random-6v0", "rwkv.blocks.1.attention.time_maa_w2", [5, 128, 16], "blocks.1.att.time_maa_w2",
     "[5, 16, 128]"),
    ("random-6v0", "rwkv.blocks.2.attention.time_decay_w1", [64, 64], "blocks.2.att.time_decay_w1", "[128, 32]"),
    ("random-7v0", "model.layers.1.attn.a_lora.lora.2.weight", [24, 128], "blocks.1.att.a2", "[24, 128]"),
    ("random-7v0", "model.layers.2.attn.r_k", [4, 32], "blocks.2.att.r_k", "[2, 64]"),
])
def test_wrong_shape_is_named(tmp_path, name, hf_name, shape, blink, want):
    src = _edited_hf(tmp_path, name, lambda h, d: h[hf_name].update(shape=shape))
    with pytest.raises(ModelFormatError, match=re.escape(f"tensor {blink} has shape ") + r".*" +
                       re.escape(f"expected {want}")):
        conv(src, tmp_path / "out.rwkv")


def _patched_model(tmp_path, path, tensor, new_name=None, shape=None):
    """The .rwkv file with one tensor table entry renamed or given another shape (same byte count)."""
    raw = bytearray(open(path, "rb").read())
    n = struct.unpack_from("<I", raw, 48)[0]
    for i in range(n):
        off = 256 + 128 * i
        if raw[off:off + 64].split(b"\0")[0].decode() == tensor:
            if new_name:
                raw[off:off + 64] = new_name.encode().ljust(64, b"\0")
            if shape:
                struct.pack_into("<I4Q", raw, off + 68, len(shape), *(list(shape) + [0] * (4 - len(shape))))
            break
    else:
        raise KeyError(tensor)
    p = tmp_path / "patched.rwkv"
    p.write_bytes(bytes(raw))
    return str(p)


@pytest.mark.parametrize("name,tensor", [
    ("random-4v0", "blocks.3.att.time_first"),
    ("random-5v0", "blocks.1.att.time_faaaa"),
    ("random-5v1", "blocks.0.att.gate.weight"),
    ("random-6v0", "blocks.2.att.time_maa_w1"),
    ("random-7v0", "blocks.1.att.v2"),
    ("random-7v0", "blocks.0.att.k_a"),
])
def test_c_loader_names_a_missing_tensor(tmp_path, converted, name, tensor):
    p = _patched_model(tmp_path, converted(name), tensor, new_name="blocks.99.unused")
    with pytest.raises(rwkv_cpu.ModelFormatError, match=rf"tensor {re.escape(tensor)} is missing"):
        rwkv_cpu.Model(p)


@pytest.mark.parametrize("name,tensor,shape,message", [
    ("random-4v0", "blocks.1.att.time_decay", (2, 64), r"blocks\.1\.att\.time_decay has shape \[2, 64\], expected \[128\]"),
    ("random-6v0", "blocks.0.att.time_maa_w2", (5, 16, 128), r"time_maa_w2 has shape \[5, 16, 128\], expected \[5, 128, 16\]"),
    ("random-6v0", "blocks.1.att.time_maa_w1", (80, 128, 1), r"time_maa_w1 has 3 dimensions, expected 2"),
    ("random-7v0", "blocks.2.att.r_k", (4, 32), r"blocks\.2\.att\.r_k has shape \[4, 32\], expected \[2, 64\]"),
    ("random-7v0", "blocks.1.att.w2", (64, 64), r"blocks\.1\.att\.w2 has shape \[64, 64\], expected \[128, 32\]"),
])
def test_c_loader_names_a_misshaped_tensor(tmp_path, converted, name, tensor, shape, message):
    p = _patched_model(tmp_path, converted(name), tensor, shape=shape)
    with pytest.raises(rwkv_cpu.ModelFormatError, match=message):
        rwkv_cpu.Model(p)


def test_c_loader_refuses_a_lora_rank_beyond_n_embd(tmp_path, converted):
    # w1 [Dw, C] with Dw = 2C: the scratch holds ranks up to n_embd, so this is refused, not overrun
    p = _patched_model(tmp_path, converted("random-7v0"), "blocks.0.att.w1", shape=(256, 16))
    with pytest.raises(rwkv_cpu.ModelFormatError, match=r"blocks\.0\.att\.w1: LoRA rank 256"):
        rwkv_cpu.Model(p)


def test_unknown_layout_names_what_was_found(tmp_path):
    header, data = read_safetensors(os.path.join(fixture_dir("random-6v0"), "hf", "model.safetensors"))
    for k in [k for k in header if ".time_maa" in k or ".time_faaaa" in k or ".ln_x" in k or "time_first" in k]:
        del header[k]
    p = tmp_path / "odd.safetensors"
    write_safetensors_raw(str(p), header, data)
    with pytest.raises(rwkv_cpu.UnsupportedModelError, match=r"no known version: blocks\.0\.att has "
                                                             r"blocks\.0\.att\.gate\.weight"):
        conv(p, tmp_path / "out.rwkv")


# ---- tokenizers and the CLI --------------------------------------------------------------------------
def test_neox_20b_tokenizer_is_embedded_for_50277_tokens(tmp_path):
    """A v4 Pile-sized vocabulary gets the GPT-NeoX 20B tokenizer the package ships."""
    from ckpt_helpers import write_pth
    rng = np.random.default_rng(0)
    C, F, V = 8, 16, 50277
    t = {"emb.weight": rng.normal(0, 0.3, (V, C)), "blocks.0.ln0.weight": np.ones(C), "blocks.0.ln0.bias": np.zeros(C),
         "ln_out.weight": np.ones(C), "ln_out.bias": np.zeros(C), "head.weight": rng.normal(0, 0.5, (V, C))}
    p = "blocks.0."
    t.update({p + "ln1.weight": np.ones(C), p + "ln1.bias": np.zeros(C), p + "ln2.weight": np.ones(C),
              p + "ln2.bias": np.zeros(C), p + "att.time_decay": rng.normal(-1, 1, C),
              p + "att.time_first": rng.normal(-1, 0.5, C), p + "att.time_mix_k": np.full((1, 1, C), 0.5),
              p + "att.time_mix_v": np.full((1, 1, C), 0.5), p + "att.time_mix_r": np.full((1, 1, C), 0.5),
              p + "att.key.weight": rng.normal(0, 0.3, (C, C)), p + "att.value.weight": rng.normal(0, 0.3, (C, C)),
              p + "att.receptance.weight": rng.normal(0, 0.3, (C, C)),
              p + "att.output.weight": rng.normal(0, 0.3, (C, C)), p + "ffn.time_mix_k": np.full((1, 1, C), 0.5),
              p + "ffn.time_mix_r": np.full((1, 1, C), 0.5), p + "ffn.key.weight": rng.normal(0, 0.3, (F, C)),
              p + "ffn.receptance.weight": rng.normal(0, 0.3, (C, C)),
              p + "ffn.value.weight": rng.normal(0, 0.3, (C, F))})
    write_pth(str(tmp_path / "pile.pth"), {k: (v.astype(np.float32), "F32") for k, v in t.items()})
    s = conv(tmp_path / "pile.pth", tmp_path / "pile.rwkv", dtype="f32")
    assert s["arch"] == "v4" and s["tokenizer"] == "hf-json"
    head, _ = read_rwkv(str(tmp_path / "pile.rwkv"))
    assert head["tokenizer_kind"] == 2 and json.loads(head["tokenizer"])["model"]["type"] == "BPE"
    model = rwkv_cpu.Model(str(tmp_path / "pile.rwkv"))
    assert model.tokenizer.encode("\nIn a shocking finding") == [187, 688, 247, 29103, 4560]
    assert model.forward(model.tokenizer.encode("Hello world"))[0].shape == (V,)
    # the flag still wins
    s = conv(tmp_path / "pile.pth", tmp_path / "none.rwkv", tokenizer="none")
    assert s["tokenizer"] == "none"


@pytest.mark.parametrize("name", ONE_PER_VERSION)
def test_cli_info_shows_the_version(converted, name, capsys):
    from rwkv_cpu.cli import main
    assert main(["info", converted(name)]) == 0
    out = capsys.readouterr().out
    assert f"architecture  RWKV {VERSION_FIXTURES[name]}\n" in out


def test_cli_generate_on_every_version(converted, capsys):
    from rwkv_cpu.cli import main
    for name in ONE_PER_VERSION:
        assert main(["generate", converted(name), "the", "-n", "8", "--seed", "1"]) == 0
        assert capsys.readouterr().out.startswith("the")
