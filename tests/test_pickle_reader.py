"""The converter's pickle reader: what torch checkpoints need works, everything else is refused without
being executed, and every resource limit holds."""
from __future__ import annotations

import os
import pickletools
import struct
import zipfile

import pytest

from ckpt_helpers import TINY, p_global, p_int, p_str, p_tuple, tensor_pickle
from rwkv_cpu.convert import pickle_reader as pr
from rwkv_cpu.convert.pickle_reader import StorageRef, TensorRef, interpret, load_tensor_refs
from rwkv_cpu.errors import ModelFormatError, UnsafePickleError


def test_real_torch_pickle():
    """The data.pkl torch.save wrote for the tiny fixture: every tensor described, nothing read."""
    with zipfile.ZipFile(os.path.join(TINY, "model.pth")) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
        refs = load_tensor_refs(zf.read(name))
    assert len(refs) == 12 * 22 + 6
    emb = refs["emb.weight"]
    assert emb.shape == (256, 64) and emb.strides == (64, 1) and emb.dtype == "F32"
    assert refs["blocks.0.att.time_mix_k"].shape == (1, 1, 64)
    assert refs["blocks.3.att.time_decay"].shape == (8, 8)


def test_hand_made_tensor_pickle():
    data = tensor_pickle([("a", "BF16", "0", 6, (2, 3), (3, 1), 0), ("b", "F16", "1", 4, (4,), (1,), 0)])
    pickletools.dis(data, out=open(os.devnull, "w"))  # well-formed, by the standard library's own reading
    refs = load_tensor_refs(data)
    assert refs["a"] == TensorRef(StorageRef("0", "BF16", 6), (2, 3), (3, 1), 0)
    assert refs["b"].dtype == "F16"


def call(module: str, name: str, arg: str) -> bytes:
    """A pickle that would call module.name(arg) under pickle.load."""
    return b"\x80\x02" + p_global(module, name) + p_str(arg) + b"\x85R."


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"), ("builtins", "exec"),
                                         ("subprocess", "Popen"), ("posix", "system"), ("builtins", "getattr"),
                                         ("torch", "load"), ("torch._utils", "_rebuild_device_tensor_from_numpy"),
                                         ("collections", "defaultdict"), ("numpy", "frombuffer")])
def test_refused_globals(module, name, tmp_path):
    marker = tmp_path / "ran"
    data = call(module, name, f"touch {marker}")
    with pytest.raises(UnsafePickleError, match=rf"{module}\.{name}"):
        interpret(data)
    assert not marker.exists()


def test_stack_global_refused():
    data = b"\x80\x04" + b"\x8c\x02os\x8c\x06system\x93" + b"\x8c\x04true\x85R."
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        interpret(data)


def test_global_is_refused_before_anything_runs(tmp_path):
    """Allowed calls before it are fine; the refusal comes at the GLOBAL itself, before its REDUCE."""
    marker = tmp_path / "ran"
    data = b"\x80\x02" + p_global("collections", "OrderedDict") + b")R" + call("os", "system", f"touch {marker}")[2:]
    with pytest.raises(UnsafePickleError, match=r"os\.system.*nothing was imported or executed"):
        interpret(data)
    assert not marker.exists()


@pytest.mark.parametrize("opcode", [b"i", b"o", b"\x81", b"\x92", b"I", b"S", b"V", b"P", b"0", b"2", b"\x82",
                                    b"\x8f", b"\x96"])
def test_other_opcodes_refused(opcode):
    with pytest.raises(ModelFormatError, match="not accepted"):
        interpret(b"\x80\x02" + opcode + b"os\nsystem\n.")


def test_reduce_on_non_function():
    with pytest.raises(UnsafePickleError):
        interpret(b"\x80\x02" + p_str("os.system") + b")R.")


def test_huge_long_binput_index():
    """LONG_BINPUT 2**32-1 makes the C unpickler allocate a 32 GiB memo; here it is one dict entry."""
    data = b"\x80\x02}r\xff\xff\xff\xffj\xff\xff\xff\xff0."
    with pytest.raises(ModelFormatError, match="not accepted"):  # the POP at the end is refused, not memory
        interpret(data)
    assert interpret(b"\x80\x02}r\xff\xff\xff\xff.") == {}


def test_memo_limit(monkeypatch):
    monkeypatch.setattr(pr, "MAX_MEMO", 100)
    data = b"\x80\x02N" + b"".join(b"r" + struct.pack("<I", i) for i in range(101)) + b"."
    with pytest.raises(ModelFormatError, match="memo exceeds 100"):
        interpret(data)


def test_memo_get_missing():
    with pytest.raises(ModelFormatError, match="never stored"):
        interpret(b"\x80\x02h\x05.")


def test_mark_nesting_bomb():
    with pytest.raises(ModelFormatError, match="nesting deeper"):
        interpret(b"\x80\x02" + b"(" * 100000 + b")" + b"t" * 100000 + b".")


def test_deep_tuple_chain_is_harmless():
    """A 200000-deep tuple built with TUPLE1 is never hashed, compared or printed recursively."""
    with pytest.raises(ModelFormatError, match="not a dict"):
        load_tensor_refs(b"\x80\x02N" + b"\x85" * 200000 + b".")


def test_deep_tuple_as_dict_key_refused():
    with pytest.raises(ModelFormatError, match="dict key"):
        interpret(b"\x80\x02}N" + b"\x85" * 100000 + b"Ns.")


def test_stack_limit(monkeypatch):
    monkeypatch.setattr(pr, "MAX_STACK", 1000)
    with pytest.raises(ModelFormatError, match="stack exceeds 1000"):
        interpret(b"\x80\x02" + b"N" * 1001 + b".")


def test_opcode_limit(monkeypatch):
    monkeypatch.setattr(pr, "MAX_OPS", 1000)
    with pytest.raises(ModelFormatError, match="more than 1000 opcodes"):
        interpret(b"\x80\x02N" + b"\x85" * 1000 + b".")


def test_string_limits():
    with pytest.raises(ModelFormatError, match="exceeds"):
        interpret(b"\x80\x02X" + struct.pack("<I", (1 << 20) + 1) + b"a" * ((1 << 20) + 1) + b".")
    with pytest.raises(ModelFormatError, match="truncated"):  # a length that lies costs nothing
        interpret(b"\x80\x02B\xff\xff\x0f\x00abc.")
    with pytest.raises(ModelFormatError, match="exceeds"):
        interpret(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 60) + b".")


def test_pickle_size_limit(monkeypatch):
    monkeypatch.setattr(pr, "MAX_PICKLE_BYTES", 10)
    with pytest.raises(ModelFormatError, match="over the 10-byte limit"):
        interpret(b"\x80\x02" + b"N" * 20 + b".")


@pytest.mark.parametrize("data,msg", [
    (b"\x80\x02}", "truncated"),
    (b"\x80\x02NN.", "unbalanced"),
    (b"\x80\x02N.junk", "follow STOP"),
    (b"\x80\x02t.", "no MARK"),
    (b"\x80\x02\x85.", "underflow"),
    (b"\x80\x02(\x85t.", "underflow"),  # TUPLE1 cannot reach below a MARK
    (b"\x80\x09N.", "protocol 9"),
    (b"\x80\x02]NNs.", "not a dict"),
    (b"\x80\x02}Na.", "not a list"),
    (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "UTF-8"),
    (b"\x80\x02cos\n", "not terminated"),
    (b"\x80\x02c" + b"a" * 300 + b"\nb\n.", "too long"),
])
def test_malformed(data, msg):
    with pytest.raises(ModelFormatError, match=msg):
        interpret(data)


def test_scalars_and_containers():
    data = (b"\x80\x02(" + p_int(-5) + b"K\x07M\x00\x01\x8a\x02\x00\x80G?\xf8\x00\x00\x00\x00\x00\x00"
            + b"N\x88\x89C\x02hi]N\x85a" + b"(dt.")
    assert interpret(data) == (-5, 7, 256, -32768, 1.5, None, True, False, b"hi", [(None,)], {})


def test_persistent_id_checks():
    good = p_tuple([p_str("storage"), p_global("torch", "FloatStorage"), p_str("0"), p_str("cpu"), p_int(4)])
    assert interpret(b"\x80\x02" + good + b"Q.") == StorageRef("0", "F32", 4)
    bad_key = p_tuple([p_str("storage"), p_global("torch", "FloatStorage"), p_str("../x"), p_str("cpu"), p_int(4)])
    with pytest.raises(ModelFormatError, match="plain name"):
        interpret(b"\x80\x02" + bad_key + b"Q.")
    not_storage = p_tuple([p_str("storage"), p_str("x"), p_str("0"), p_str("cpu"), p_int(4)])
    with pytest.raises(ModelFormatError, match="not a storage class"):
        interpret(b"\x80\x02" + not_storage + b"Q.")


def test_rebuild_argument_checks():
    with pytest.raises(ModelFormatError, match="not a dimension"):
        load_tensor_refs(tensor_pickle([("a", "F32", "0", 4, (-1,), (1,), 0)]))
    with pytest.raises(ModelFormatError, match="differ in length"):
        load_tensor_refs(tensor_pickle([("a", "F32", "0", 4, (2, 2), (1,), 0)]))
    with pytest.raises(ModelFormatError, match="at most 8"):
        load_tensor_refs(tensor_pickle([("a", "F32", "0", 1, (1,) * 9, (1,) * 9, 0)]))


def test_non_tensor_values_refused():
    with pytest.raises(ModelFormatError, match="'x' is 5, not a tensor"):
        load_tensor_refs(b"\x80\x02}" + p_str("x") + b"K\x05s.")
