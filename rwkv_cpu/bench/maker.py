"""`rwkv-cpu bench make`: a random-weight RWKV checkpoint of any shape, in a real checkpoint layout.

    rwkv-cpu bench make eagle-7b /work/bench-models/eagle-7b-v5.2-bf16            # Hugging Face dir, bf16
    rwkv-cpu bench make 1.5b out/ --version v7 --seed 3 --outliers 3

What it writes into OUT (a directory): `config.json` and `model.safetensors` in the Hugging Face layout of the
version (transformers' names for v4, the Rwkv5/Rwkv6 remote-code names, fla's RWKV7ForCausalLM names for v7),
or with `--layout blinkdl` one `model.safetensors` under BlinkDL names, or with `--layout pth` a BlinkDL
`model.pth` (a torch zip archive written by hand, no torch); and `bench_model.json`, the recipe.

* Values: the specs of `rwkv_cpu.bench.weights` (trained-like magnitudes, each version's own tensors, shapes,
  FFN size and LoRA ranks), rounded to bf16 (or stored as f16 / f32 with --dtype).
* Deterministic from the seed: tensor `name` is drawn from its own generator, seeded with (seed,
  crc32(name)), in row chunks of a fixed size, so the bytes depend on nothing else.
* Streaming: the header is computed from the specs first, then each tensor is generated and written chunk by
  chunk; memory stays at a few chunks (tens of MB) whatever the model size. The file appears under its name
  only when complete.
* `--outliers K`: K residual channels (and K attention and FFN channels per layer) whose input weights are
  20-50x larger, as in trained LLMs, with the norms feeding them divided by the same factor (the construction
  of tests/quant_helpers.py: the f32 model computes the same function, only quantizing it gets harder).
"""
from __future__ import annotations

import json
import os
import struct
import time
import zipfile
import zlib
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .weights import Spec, hf_config, hf_tensor, make_specs

CHUNK_ELEMENTS = 1 << 22          # values generated at a time (16 MiB of float32)
DTYPES = {"bf16": "BF16", "f16": "F16", "f32": "F32"}
OUTLIER_RANGE = (20.0, 50.0)
LAYOUTS = ("hf", "blinkdl", "pth")   # HF names + config.json; BlinkDL names in a .safetensors; BlinkDL .pth


# ---- outlier channels ------------------------------------------------------------------------------------
# name -> [(axis, channel indices, factor per channel)]: axis 1 multiplies columns (input channels) of a
# matrix, axis 0 rows (LoRA inputs [C, D] and the FFN key's rows), axis -1 entries of a vector.
Scaling = Dict[str, List[Tuple[int, np.ndarray, np.ndarray]]]


def outlier_plan(version: str, d: dict, seed: int, n_channels: int) -> Scaling:
    """Which values the outlier channels scale (module docstring). Residual channels are the same in every
    layer (as in trained models); attention-output (v5, v6: after ln_x) and FFN channels differ per layer."""
    plan: Scaling = {}
    if n_channels <= 0:
        return plan
    rng = np.random.default_rng([seed, 0x71])   # 0x71: a stream of its own, apart from the tensors'

    def pick(n):
        return np.sort(rng.choice(n, size=min(n_channels, n), replace=False)), rng.uniform(*OUTLIER_RANGE,
                                                                                            size=min(n_channels, n))

    def add(name, axis, idx, factor):
        plan.setdefault(name, []).append((axis, idx, factor))

    C, F, L = d["C"], d["F"], d["L"]
    A = C if version == "v4" else d["H"] * d["N"]
    c_idx, c_s = pick(C)
    names = {s.name for s in make_specs(version, dict(d, L=1, V=1))}
    att_inputs = [n.split("att.", 1)[1] for n in names if ".att." in n and n.endswith(".weight")
                  and n.split("att.", 1)[1] in ("receptance.weight", "key.weight", "value.weight", "gate.weight")]
    lora_inputs = [n.split("att.", 1)[1] for n in names if ".att." in n
                   and n.split("att.", 1)[1] in ("time_maa_w1", "time_decay_w1", "w1", "a1", "v1", "g1")]
    for i in range(L):
        b = f"blocks.{i}."
        for part in ("weight", "bias"):
            add(b + "ln1." + part, -1, c_idx, 1 / c_s)
            add(b + "ln2." + part, -1, c_idx, 1 / c_s)
        for m in att_inputs:
            add(b + "att." + m, 1, c_idx, c_s)
        for m in lora_inputs:
            if not (m == "v1" and i == 0):
                add(b + "att." + m, 0, c_idx, c_s)
        ffn_in = ("key.weight",) if version == "v7" else ("key.weight", "receptance.weight")
        for m in ffn_in:
            add(b + "ffn." + m, 1, c_idx, c_s)
        if version.startswith("v5") or version == "v6":   # output reads ln_x(.) * gate: linear per channel
            a_idx, a_s = pick(A)
            for part in ("weight", "bias"):
                add(b + "att.ln_x." + part, -1, a_idx, 1 / a_s)
            add(b + "att.output.weight", 1, a_idx, a_s)
        f_idx, f_s = pick(F)                                # relu(k / sqrt(s))^2 = relu(k)^2 / s
        add(b + "ffn.key.weight", 0, f_idx, 1 / np.sqrt(f_s))
        add(b + "ffn.value.weight", 1, f_idx, f_s)
    for part in ("weight", "bias"):
        add("ln_out." + part, -1, c_idx, 1 / c_s)
    add("head.weight", 1, c_idx, c_s)
    return plan


# ---- values ------------------------------------------------------------------------------------------------
def tensor_seed(seed: int, name: str) -> List[int]:
    return [int(seed), zlib.crc32(name.encode())]


def row_chunks(spec: Spec) -> Iterator[Tuple[int, int]]:
    """[r0, r1) ranges of the first axis, about CHUNK_ELEMENTS values each (a vector is one chunk)."""
    rows = spec.shape[0]
    per_row = int(np.prod(spec.shape[1:])) if len(spec.shape) > 1 else rows
    step = rows if len(spec.shape) == 1 else max(1, CHUNK_ELEMENTS // max(per_row, 1))
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def generate(spec: Spec, seed: int, scaling: Optional[list] = None) -> Iterator[np.ndarray]:
    """The tensor's float32 values, chunk by chunk along its first axis (shape [r1 - r0, ...])."""
    rng = np.random.default_rng(tensor_seed(seed, spec.name))
    for r0, r1 in row_chunks(spec):
        z = rng.standard_normal((r1 - r0,) + spec.shape[1:], dtype=np.float32)
        z *= np.float32(spec.std)
        z += np.float32(spec.mean)
        if spec.ramp is not None:
            z += np.linspace(spec.ramp[0], spec.ramp[1], spec.shape[0]).astype(np.float32)[r0:r1]
        for axis, idx, factor in scaling or ():
            _scale(z, r0, r1, axis, idx, factor.astype(np.float32))
        yield z


def _scale(z: np.ndarray, r0: int, r1: int, axis: int, idx: np.ndarray, factor: np.ndarray) -> None:
    if axis == -1:
        z.reshape(-1)[idx] *= factor
    elif axis == 1:
        z[:, idx] *= factor
    else:
        inside = (idx >= r0) & (idx < r1)
        z[idx[inside] - r0] *= factor[inside].reshape((-1,) + (1,) * (z.ndim - 1))


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (round to nearest, ties to even), uint16."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def encode(a: np.ndarray, dtype: str) -> bytes:
    if dtype == "bf16":
        return to_bf16_bits(a).tobytes()
    return np.ascontiguousarray(a, dtype="<f2" if dtype == "f16" else "<f4").tobytes()


# ---- the checkpoint -----------------------------------------------------------------------------------------
def _file_order(specs: List[Spec]) -> List[Spec]:
    """The checkpoint's order: embedding, the layers in turn, then the output norm and head (as trained files)."""
    def key(s: Spec):
        if s.name.startswith("blocks."):
            return (1, int(s.name.split(".")[1]))
        return (0 if s.name.startswith("emb.") else 2, 0)
    return sorted(specs, key=key)   # stable: within a layer, spec order


def plan_tensors(version: str, d: dict, layout: str) -> List[Tuple[Spec, str, str]]:
    """(spec, stored name, value change) of every stored tensor, in file order."""
    out = []
    for s in _file_order(make_specs(version, d)):
        if layout in ("blinkdl", "pth"):
            out.append((s, s.name, ""))
            continue
        target = hf_tensor(s.name, version)
        if target is not None:
            out.append((s, target[0], target[1]))
    return out


def stored_shape(spec: Spec, how: str) -> List[int]:
    if how == "flat":
        return [int(np.prod(spec.shape))]
    if how == "T":
        return list(reversed(spec.shape))
    return list(spec.shape)


def safetensors_header(tensors: List[Tuple[Spec, str, str]], dtype: str, meta: dict) -> bytes:
    header: dict = {"__metadata__": {"format": "pt", **{k: str(v) for k, v in meta.items()}}}
    off, size = 0, np.dtype("<f4" if dtype == "f32" else "<f2").itemsize
    for spec, name, how in tensors:
        n = int(np.prod(spec.shape)) * size
        header[name] = {"dtype": DTYPES[dtype], "shape": stored_shape(spec, how), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


# ---- BlinkDL .pth: a torch zip archive, written by hand (no torch) -----------------------------------------
_TORCH_STORAGE = {"bf16": "BFloat16Storage", "f16": "HalfStorage", "f32": "FloatStorage"}


def _p_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _p_int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v) if -2**31 <= v < 2**31 else b"\x8a\x08" + struct.pack("<q", v)


def _p_tuple(items: List[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def torch_pickle(tensors: List[Tuple[Spec, str, str]], dtype: str) -> bytes:
    """data.pkl of torch.save({name: tensor}) (protocol 2, the opcodes torch emits), storage i = tensor i."""
    out = [b"\x80\x02}("]
    for i, (spec, name, _) in enumerate(tensors):
        shape = spec.shape
        strides = [int(np.prod(shape[k + 1:])) for k in range(len(shape))]
        storage = _p_tuple([_p_str("storage"), _p_global("torch", _TORCH_STORAGE[dtype]), _p_str(str(i)),
                            _p_str("cpu"), _p_int(int(np.prod(shape)))]) + b"Q"
        args = _p_tuple([storage, _p_int(0), _p_tuple([_p_int(d) for d in shape]),
                         _p_tuple([_p_int(d) for d in strides]), b"\x89",
                         _p_global("collections", "OrderedDict") + b")R"])
        out.append(_p_str(name) + _p_global("torch._utils", "_rebuild_tensor_v2") + args + b"R")
    out.append(b"u.")
    return b"".join(out)


def write_pth(path: str, tensors: List[Tuple[Spec, str, str]], dtype: str, seed: int, scaling: Scaling,
              progress=None) -> None:
    """A BlinkDL .pth (torch zip, stored entries), each storage streamed chunk by chunk."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("archive/data.pkl", torch_pickle(tensors, dtype))
        zf.writestr("archive/byteorder", b"little")
        for i, (spec, name, _) in enumerate(tensors):
            with zf.open(f"archive/data/{i}", "w", force_zip64=True) as w:
                for chunk in generate(spec, seed, scaling.get(spec.name)):
                    w.write(encode(chunk, dtype))
            if progress:
                progress(i + 1, len(tensors), name)
        zf.writestr("archive/version", b"3\n")


def write_safetensors(path: str, tensors: List[Tuple[Spec, str, str]], dtype: str, seed: int, scaling: Scaling,
                      meta: dict, progress=None) -> None:
    with open(path, "wb") as f:
        f.write(safetensors_header(tensors, dtype, meta))
        for k, (spec, name, how) in enumerate(tensors):
            if how:   # small tensors that change layout: whole
                whole = np.concatenate(list(generate(spec, seed, scaling.get(spec.name)))).reshape(spec.shape)
                f.write(encode(whole.T if how == "T" else whole, dtype))
            else:
                for chunk in generate(spec, seed, scaling.get(spec.name)):
                    f.write(encode(chunk, dtype))
            if progress:
                progress(k + 1, len(tensors), name)


def make_checkpoint(out_dir: str, version: str, d: dict, *, seed: int = 0, dtype: str = "bf16",
                    outliers: int = 0, layout: str = "hf", progress=None) -> dict:
    """Write the checkpoint (module docstring); returns its recipe (also written to bench_model.json)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    t0 = time.monotonic()
    os.makedirs(out_dir, exist_ok=True)
    tensors = plan_tensors(version, d, layout)
    scaling = outlier_plan(version, d, seed, outliers)
    recipe = {"version": version, "dims": d, "seed": seed, "dtype": dtype, "outliers": outliers, "layout": layout,
              "maker": "rwkv_cpu.bench.maker"}
    path = os.path.join(out_dir, "model.pth" if layout == "pth" else "model.safetensors")
    tmp = path + ".partial"
    if layout == "pth":
        write_pth(tmp, tensors, dtype, seed, scaling, progress)
    else:
        write_safetensors(tmp, tensors, dtype, seed, scaling, {"rwkv_bench": json.dumps(recipe, sort_keys=True)},
                          progress)
    os.replace(tmp, path)
    n_params = sum(int(np.prod(spec.shape)) for spec, _, _ in tensors)
    if layout == "hf":
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(hf_config(version, d), f, indent=2)
            f.write("\n")
    recipe.update(n_params=n_params, bytes=os.path.getsize(path), seconds=round(time.monotonic() - t0, 1))
    with open(os.path.join(out_dir, "bench_model.json"), "w") as f:
        json.dump(recipe, f, indent=1)
        f.write("\n")
    return recipe
