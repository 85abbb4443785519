"""Helpers for the quantization tests: a model with outlier channels, fake-quantized baselines, and
the divergence measures (KL, top-1 agreement) between two models' logits.

Outlier model. Trained LLMs have a few input channels whose weights are tens of times larger than the
rest (and the norms feeding them correspondingly smaller). `add_outlier_channels` builds that from any
RWKV-5.2 checkpoint without changing the function it computes: for a few channels c it multiplies the
weight columns that read channel c by s_c in [20, 50] and divides the producer of channel c by s_c
(the LayerNorm / GroupNorm affine of that channel, or for ffn.value, the ffn.key row by sqrt(s_c), as
relu(k / sqrt(s))^2 = relu(k)^2 / s). Token shift and the gate are linear per channel, so the f32 model
is the same model, up to rounding; only its quantization gets harder."""
from __future__ import annotations

import json
import os
import struct
from typing import Callable, Dict

import numpy as np

from rwkv_cpu.convert import open_checkpoint
from rwkv_cpu.convert.hf import to_blinkdl_names

# A few hundred bytes of plain English prose (written for these tests).
TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the wick, "
    "polished the great lens, and watched the ships pass beyond the rocks. In winter the storms came "
    "from the north, and the waves broke over the harbour wall; in summer the sea was calm and blue, "
    "and children fished from the pier. Nobody in the village remembered a time before the light. "
    "When the keeper grew old, his granddaughter learned to climb the stairs with him, counting the "
    "steps aloud, and one night she lit the lamp by herself while he slept in the chair by the window."
)


def load_blinkdl(src: str) -> Dict[str, np.ndarray]:
    """Every tensor of a checkpoint as float32, under BlinkDL names."""
    with open_checkpoint(src) as ckpt:
        tensors, _ = to_blinkdl_names(ckpt.tensors)
        return {name: np.array(t.rows(), dtype=np.float32).reshape(t.shape) for name, t in tensors.items()}


def add_outlier_channels(t: Dict[str, np.ndarray], n_channels: int = 3, seed: int = 0) -> Dict[str, np.ndarray]:
    """The same function with outlier input channels (module docstring). Returns a new dict."""
    t = {k: v.astype(np.float64).copy() for k, v in t.items()}
    rng = np.random.default_rng(seed)
    C = t["emb.weight"].shape[1]
    A = t["blocks.0.att.key.weight"].shape[0]
    F = t["blocks.0.ffn.key.weight"].shape[0]
    n_layer = 1 + max(int(k.split(".")[1]) for k in t if k.startswith("blocks."))

    def outliers(n):
        idx = rng.choice(n, size=n_channels, replace=False)
        return idx, rng.uniform(20, 50, size=n_channels)

    def scale_norm(prefix, idx, s):
        for part in ("weight", "bias"):
            t[f"{prefix}.{part}"].reshape(-1)[idx] /= s

    c_idx, c_s = outliers(C)  # the same residual channels in every layer, as in trained models
    for i in range(n_layer):
        b = f"blocks.{i}."
        scale_norm(b + "ln1", c_idx, c_s)
        for m in ("receptance", "key", "value", "gate"):
            t[b + f"att.{m}.weight"][:, c_idx] *= c_s
        scale_norm(b + "ln2", c_idx, c_s)
        for m in ("key", "receptance"):
            t[b + f"ffn.{m}.weight"][:, c_idx] *= c_s
        a_idx, a_s = outliers(A)
        scale_norm(b + "att.ln_x", a_idx, a_s)
        t[b + "att.output.weight"][:, a_idx] *= a_s
        f_idx, f_s = outliers(F)
        t[b + "ffn.key.weight"][f_idx, :] /= np.sqrt(f_s)[:, None]
        t[b + "ffn.value.weight"][:, f_idx] *= f_s
    scale_norm("ln_out", c_idx, c_s)
    t["head.weight"][:, c_idx] *= c_s
    return {k: v.astype(np.float32) for k, v in t.items()}


def write_safetensors(path: str, tensors: Dict[str, np.ndarray]) -> None:
    """A float32 safetensors file (BlinkDL names are accepted by the converter)."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def is_matrix(name: str, shape) -> bool:
    """The tensors --quant applies to in a v5.2 file: the 2-D weights (not time_decay/time_faaaa [H, N])."""
    return len(shape) == 2 and name.endswith(".weight")


def rewrite_matrices(src: str, out: str, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """Copy the f32 .rwkv file src to out with every matrix replaced by fn(matrix) (same shape)."""
    blob = bytearray(open(src, "rb").read())
    n_tensors = struct.unpack_from("<I", blob, 48)[0]
    data_offset = struct.unpack_from("<Q", blob, 96)[0]
    for i in range(n_tensors):
        e = struct.unpack_from("<64sII4QQQQ", blob, 256 + 128 * i)
        name, dtype, n_dims = e[0].rstrip(b"\0").decode(), e[1], e[2]
        shape = tuple(e[3:3 + n_dims])
        if not is_matrix(name, shape):
            continue
        assert dtype == 0, f"{name}: rewrite_matrices needs an f32 file"
        start, size = data_offset + e[7], e[8]
        w = np.frombuffer(bytes(blob[start:start + size]), dtype="<f4").reshape(shape)
        blob[start:start + size] = np.ascontiguousarray(fn(w), dtype="<f4").tobytes()
    with open(out, "wb") as f:
        f.write(bytes(blob))


def absmax_q4_0(w: np.ndarray) -> np.ndarray:
    """The baseline: plain absmax round-to-nearest 4-bit in blocks of 32 along the input dimension, as
    ggml's Q4_0 (d = the block's signed extreme / -8, q = clip(round(x / d), -8, 7), scale in f16),
    dequantized back to float."""
    rows, cols = w.shape
    b = w.reshape(rows, cols // 32, 32).astype(np.float32)
    idx = np.abs(b).argmax(axis=2)
    extreme = np.take_along_axis(b, idx[..., None], axis=2)
    d = (extreme / -8.0).astype(np.float16).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.round(b * inv), -8, 7)
    return (q * d).reshape(rows, cols)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def mean_kl(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean over positions of KL(softmax(ref) || softmax(logits))."""
    lp, lq = log_softmax(ref_logits), log_softmax(logits)
    return float((np.exp(lp) * (lp - lq)).sum(axis=-1).mean())


def top1_agreement(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    return float((ref_logits.argmax(-1) == logits.argmax(-1)).mean())
