"""Value transforms applied while converting (docs/FILE_FORMAT.md, "Tensors by architecture").

A transform maps a chunk of rows of a source tensor, in float64, to the stored values (then rounded to
f32 once, and for matrices to f16 if asked). It may read other tensors, named in `inputs`, which the
writer loads whole (they are vectors). Transforms work row by row, so a chunk of rows gives the same
result as the whole tensor: the writer streams big tensors through them in chunks. The exception is a
`whole` transform (a transpose), which needs the whole tensor: it is only used on small tensors (LoRA
matrices, vectors), which the writer reads in one piece.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy as np

LN_EPS = 1e-5  # LayerNorm eps everywhere in RWKV (RWKV_REFERENCE.md §0)


@dataclass(frozen=True)
class Transform:
    """fn(rows [r, ...] float64, inputs as float64 arrays) -> rows [r, ...] float64."""

    fn: Callable[[np.ndarray, List[np.ndarray]], np.ndarray]
    inputs: Tuple[str, ...] = ()
    doc: str = ""
    whole: bool = False  # needs the whole tensor (never used on streamed MATRIX tensors)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = LN_EPS) -> np.ndarray:
    """LayerNorm over the last axis, biased variance, as torch: x [r, C], weight/bias [C] -> [r, C]."""
    mean = x.mean(axis=-1, keepdims=True)  # [r, 1]
    out = x - mean  # [r, C]
    var = np.mean(np.square(out), axis=-1, keepdims=True)  # [r, 1]
    out /= np.sqrt(var + eps)  # in place from here: one [r, C] buffer besides the input
    out *= weight
    out += bias
    return out


def fold_ln0(rows: np.ndarray, inputs: List[np.ndarray]) -> np.ndarray:
    """emb rows [r, C] -> LN(emb; blocks.0.ln0): the LayerNorm the model applies once before layer 0."""
    weight, bias = inputs  # [C], [C] (squeezed by the caller)
    return layer_norm(rows, weight.reshape(-1), bias.reshape(-1))


def decay(rows: np.ndarray, inputs: List[np.ndarray]) -> np.ndarray:
    """v5 time_decay [H, N] or [H] -> w = exp(-exp(time_decay)), the decay factor in (0, 1)."""
    return np.exp(-np.exp(rows))


def neg_exp(rows: np.ndarray, inputs: List[np.ndarray]) -> np.ndarray:
    """v4 time_decay [A] -> w = -exp(time_decay), the (negative) log-space decay per token."""
    return -np.exp(rows)


def exp(rows: np.ndarray, inputs: List[np.ndarray]) -> np.ndarray:
    """v5.0 time_first [H] -> u = exp(time_first), the bonus factor."""
    return np.exp(rows)


def transpose(values: np.ndarray, inputs: List[np.ndarray]) -> np.ndarray:
    """A LoRA matrix used as `x @ M` [in, out] (or a stack of them [k, in, out]) -> [out, in] (or
    [k, out, in]), the layout `y = W x` kernels read. Needs the whole tensor."""
    return np.ascontiguousarray(np.swapaxes(values, -1, -2))


TRANSFORMS: Dict[str, Transform] = {
    "fold_ln0": Transform(fold_ln0, ("blocks.0.ln0.weight", "blocks.0.ln0.bias"),
                          "LayerNorm blocks.0.ln0 folded into the embedding"),
    "decay": Transform(decay, (), "exp(-exp(x))"),
    "neg_exp": Transform(neg_exp, (), "-exp(x)"),
    "exp": Transform(exp, (), "exp(x)"),
    "transpose": Transform(transpose, (), "swap the last two axes", whole=True),
}
