"""Helpers for the converter tests: build torch zips and safetensors files by hand (no torch, no pickle
module), read back a .rwkv file, and locate the test fixtures."""
from __future__ import annotations

import json
import os
import struct
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
TINY = os.path.join(DATA, "tiny-5v2-730K")
RANDOM = os.path.join(DATA, "random-5v2")
TINY4 = os.path.join(DATA, "tiny-4v0-660K")

_TORCH_STORAGE = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage", "F64": "DoubleStorage",
                  "I64": "LongStorage"}
_NP = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I64": "<i8"}


# ---- pickles, by hand ---------------------------------------------------------------------------------
def p_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def p_tuple(items: List[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def tensor_pickle(entries: List[Tuple[str, str, str, int, Tuple[int, ...], Tuple[int, ...], int]]) -> bytes:
    """A torch-style data.pkl for {name: tensor}. Each entry: (name, dtype, storage key, storage numel,
    shape, strides, storage offset) -- the opcodes torch.save emits (protocol 2)."""
    out = [b"\x80\x02}("]
    for name, dtype, key, n, shape, strides, offset in entries:
        storage = p_tuple([p_str("storage"), p_global("torch", _TORCH_STORAGE[dtype]), p_str(key), p_str("cpu"),
                           p_int(n)]) + b"Q"
        args = p_tuple([storage, p_int(offset), p_tuple([p_int(d) for d in shape]),
                        p_tuple([p_int(d) for d in strides]), b"\x89",
                        p_global("collections", "OrderedDict") + b")R"])
        out.append(p_str(name) + p_global("torch._utils", "_rebuild_tensor_v2") + args + b"R")
    out.append(b"u.")
    return b"".join(out)


def write_zip(path: str, files: Dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def write_pth(path: str, tensors: Dict[str, Tuple[np.ndarray, str]], prefix: str = "archive",
              compress: int = zipfile.ZIP_STORED, strides: Optional[Dict[str, Tuple[int, ...]]] = None) -> None:
    """A torch zip checkpoint of {name: (array, dtype)}; bf16 arrays are given as their uint16 bits."""
    entries, files = [], {}
    for i, (name, (arr, dtype)) in enumerate(tensors.items()):
        arr = np.ascontiguousarray(arr, dtype=_NP[dtype])
        st = tuple(int(np.prod(arr.shape[k + 1:])) for k in range(arr.ndim))
        entries.append((name, dtype, str(i), arr.size, arr.shape, (strides or {}).get(name, st), 0))
        files[f"{prefix}/data/{i}"] = arr.tobytes()
    files = {f"{prefix}/data.pkl": tensor_pickle(entries), f"{prefix}/byteorder": b"little", **files}
    write_zip(path, files, compress)


# ---- safetensors, by hand ----------------------------------------------------------------------------
def read_safetensors(path: str) -> Tuple[dict, bytes]:
    """(header dict, data bytes) of a safetensors file, parsed with a few lines of struct and json."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob)
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_safetensors_raw(path: str, header: dict, data: bytes) -> None:
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def safetensors_array(header: dict, data: bytes, name: str) -> np.ndarray:
    """A tensor of a safetensors file as float64 (bf16 widened by hand)."""
    e = header[name]
    b, end = e["data_offsets"]
    raw = np.frombuffer(data[b:end], dtype=_NP[e["dtype"]])
    if e["dtype"] == "BF16":
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float64).reshape(e["shape"])


# ---- .rwkv, read back --------------------------------------------------------------------------------
def read_rwkv(path: str) -> Tuple[dict, Dict[str, Tuple[int, Tuple[int, ...], bytes]]]:
    """(header fields, {name: (dtype, shape, data bytes)}) of a .rwkv file, per docs/FILE_FORMAT.md."""
    with open(path, "rb") as f:
        blob = f.read()
    fields = struct.unpack_from("<8s12I8Q", blob)
    keys = ["magic", "version", "header_size", "arch", "n_layer", "n_embd", "dim_att", "n_head", "head_size",
            "n_ffn", "n_vocab", "n_tensors", "tokenizer_kind", "table_offset", "tokenizer_offset",
            "tokenizer_size", "metadata_offset", "metadata_size", "data_offset", "data_size", "file_size"]
    head = dict(zip(keys, fields))
    tensors = {}
    for i in range(head["n_tensors"]):
        e = struct.unpack_from("<64sII4QQQQ", blob, 256 + 128 * i)
        name = e[0].rstrip(b"\0").decode()
        shape = tuple(e[3:3 + e[2]])
        start = head["data_offset"] + e[7]
        tensors[name] = (e[1], shape, blob[start:start + e[8]])
    head["metadata"] = json.loads(blob[head["metadata_offset"]:head["metadata_offset"] + head["metadata_size"]])
    head["tokenizer"] = blob[head["tokenizer_offset"]:head["tokenizer_offset"] + head["tokenizer_size"]]
    return head, tensors


def rwkv_array(tensors: dict, name: str) -> np.ndarray:
    dtype, shape, raw = tensors[name]
    return np.frombuffer(raw, dtype="<f4" if dtype == 0 else "<f2").reshape(shape)


def world_vocab() -> str:
    """The real World vocab: the copy the package ships."""
    from rwkv_cpu.convert.tokenizer_blob import package_world_vocab

    path = package_world_vocab()
    assert os.path.isfile(path), f"the package does not ship {path}"
    return os.path.abspath(path)
