"""Which RWKV version a checkpoint is, its dimensions, and the tensors the `.rwkv` file gets.

Detection reads tensor names and shapes (RWKV_REFERENCE.md §4 and the "detect" column of §2.2), never
config.json. Each convertible version is a table of `TensorSpec` rows, one per BlinkDL tensor name:

    pattern                     shape in the checkpoint    kind     transform
    "blocks.{i}.att.time_decay" ("H", "N")                 VECTOR   "decay"

`{i}` rows repeat for every layer (or only layer 0 / layers 1.. , see `layers`); the output lists the
file's tensors in table order, a run of `{i}` rows layer by layer. Shape symbols are the dimensions
(L C A H N F V, and the LoRA ranks Dm Dd of v6, Dw Da Dv Dg of v7) or literal numbers, derived from the
shapes of a few tensors by the version's `derive_dims`. Kinds:

    MATRIX   a big [out, in] matrix, stored in the dtype chosen at conversion (quantizable)
    LORA     a small matrix of a low-rank (LoRA) term, always f32, stored in the shape `store` gives
             (the converter transposes the checkpoint's `x @ W` matrices to `[out, in]`, so that the C
             kernels apply them as `W x` like every other matrix); not quantizable
    VECTOR   f32 with leading 1s squeezed (`(1,1,C)` -> `[C]`)
    INPUT    read by another tensor's transform, not stored
    IGNORED  accepted and shape-checked if present, not stored (v7's unused layer-0 value residual)

Each row says whether the quantizer may quantize it (`quantizable`: the big matrices, emb and head) and
may rename the tensor in the file (`store_as`). Transforms are named in `transforms.TRANSFORMS`. Adding
a version = writing its table and its `derive_dims`, and adding it to `SPECS`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import ModelFormatError, UnsupportedModelError
from .tensors import FLOAT_DTYPES
from .transforms import TRANSFORMS, Transform

Shape = Tuple[int, ...]

MATRIX = "matrix"
LORA = "lora"
VECTOR = "vector"
INPUT = "input"
IGNORED = "ignored"

# Which layers a `{i}` row applies to.
ALL_LAYERS = "all"
FIRST_LAYER = "first"  # layer 0 only
LATER_LAYERS = "later"  # layers 1..L-1

# Limits of the C reader (csrc/core/model_file.c): a checkpoint beyond them cannot be loaded anyway.
MAX_LAYERS = 4096
MAX_WIDTH = 1 << 20
MAX_VOCAB = 1 << 24


@dataclass(frozen=True)
class Dims:
    """Model dimensions, as stored in the .rwkv header."""

    n_layer: int  # L
    n_embd: int  # C
    dim_att: int  # A = H * N
    n_head: int  # H
    head_size: int  # N
    n_ffn: int  # F
    n_vocab: int  # V
    ranks: Tuple[Tuple[str, int], ...] = ()  # LoRA ranks by symbol, e.g. (("Dm", 32), ("Dd", 64)) for v6

    def symbols(self) -> Dict[str, int]:
        sym = {"L": self.n_layer, "C": self.n_embd, "A": self.dim_att, "H": self.n_head,
               "N": self.head_size, "F": self.n_ffn, "V": self.n_vocab}
        sym.update(self.ranks)
        return sym

    def resolve(self, shape: Tuple[str, ...]) -> Shape:
        """Symbols (or literal numbers) -> sizes."""
        sym = self.symbols()

        def one(s: str) -> int:
            if "*" in s:  # "5*Dm"
                factor, name = s.split("*")
                return int(factor) * one(name)
            return int(s) if s.isdigit() else sym[s]

        return tuple(one(s) for s in shape)

    def describe(self) -> str:
        """`L=3 C=128 ...` for messages."""
        return " ".join(f"{k}={v}" for k, v in self.symbols().items())


@dataclass(frozen=True)
class TensorSpec:
    """One row of a version's table."""

    pattern: str  # BlinkDL name; "{i}" stands for the layer index
    shape: Tuple[str, ...]  # shape in the checkpoint, in dimension symbols
    kind: str  # MATRIX, LORA, VECTOR, INPUT or IGNORED
    transform: Optional[str] = None  # a key of transforms.TRANSFORMS
    store: Optional[Tuple[str, ...]] = None  # stored shape (LORA); default: `shape`, squeezed for vectors
    store_as: Optional[str] = None  # name in the .rwkv file, if not `pattern`
    layers: str = ALL_LAYERS  # for `{i}` rows: ALL_LAYERS, FIRST_LAYER or LATER_LAYERS
    optional: bool = False  # may be absent (then nothing is stored)

    @property
    def quantizable(self) -> bool:
        """May the quantizer store this tensor quantized? Only the big matrices (projections, FFN, emb,
        head): LoRA matrices, vectors and time parameters stay f32 (RWKV_REFERENCE.md §6.2)."""
        return self.kind == MATRIX

    def applies_to(self, layer: int) -> bool:
        return (self.layers == ALL_LAYERS or (self.layers == FIRST_LAYER and layer == 0)
                or (self.layers == LATER_LAYERS and layer > 0))


def T(pattern: str, shape: str, kind: str, transform: Optional[str] = None, *, store: Optional[str] = None,
      store_as: Optional[str] = None, layers: str = ALL_LAYERS, optional: bool = False) -> TensorSpec:
    """Table row shorthand: shapes are written as space-separated symbols, e.g. "V C"."""
    return TensorSpec(pattern, tuple(shape.split()), kind, transform, tuple(store.split()) if store else None,
                      store_as, layers, optional)


@dataclass
class PlannedTensor:
    """A tensor of the output file: its name and stored shape, and where its values come from."""

    name: str
    shape: Shape  # as stored (vectors squeezed)
    kind: str  # MATRIX, LORA or VECTOR
    source: object  # a LazyTensor (or TransposedTensor) of the checkpoint
    transform: Optional[Transform]
    inputs: List[object]  # the transform's input tensors, in the order it declares them
    quantizable: bool = False  # see TensorSpec.quantizable


@dataclass
class ModelPlan:
    """A checkpoint checked against its version's table: everything the writer needs."""

    version: str  # "v5.2"
    arch_id: int  # header value
    dims: Dims
    tensors: List[PlannedTensor]


@dataclass(frozen=True)
class ArchSpec:
    """A convertible RWKV version."""

    version: str
    arch_id: int
    derive_dims: Callable[[Dict[str, object]], Dims]
    table: Tuple[TensorSpec, ...]


# ---- helpers for derive_dims -------------------------------------------------------------------------
def _shape_of(tensors: Dict[str, object], name: str, ndim: int, what: str) -> Shape:
    """The shape of a tensor the dimensions are read from; it must exist and have `ndim` dimensions."""
    t = tensors.get(name)
    if t is None:
        raise ModelFormatError(f"tensor {name} is missing (it gives {what})")
    shape: Shape = tuple(t.shape)  # type: ignore[attr-defined]
    squeezed = _squeeze(shape) if ndim == 1 else shape
    if len(squeezed) != ndim:
        raise ModelFormatError(f"tensor {name} has shape {list(shape)}; expected {ndim} dimension(s) ({what})")
    return squeezed


def count_layers(tensors: Dict[str, object]) -> int:
    """L: one more than the largest `blocks.{i}.` index (gaps show up later as missing tensors)."""
    indices = [int(m.group(1)) for n in tensors if (m := re.match(r"^blocks\.(\d+)\.", n))]
    if not indices:
        raise ModelFormatError("no blocks.{i}.* tensors: the checkpoint has no layers")
    n_layer = max(indices) + 1
    if n_layer > MAX_LAYERS:
        raise ModelFormatError(f"layer index {n_layer - 1} exceeds the limit of {MAX_LAYERS} layers")
    return n_layer


def check_dims(d: Dims) -> Dims:
    """Sanity limits shared with the C reader."""
    for name, v, cap in (("n_layer", d.n_layer, MAX_LAYERS), ("n_embd", d.n_embd, MAX_WIDTH),
                         ("dim_att", d.dim_att, MAX_WIDTH), ("n_ffn", d.n_ffn, MAX_WIDTH),
                         ("n_vocab", d.n_vocab, MAX_VOCAB)):
        if not 0 < v <= cap:
            raise ModelFormatError(f"{name} = {v} is out of range (1..{cap})")
    if d.n_head * d.head_size != d.dim_att:
        raise ModelFormatError(f"n_head {d.n_head} x head_size {d.head_size} != dim_att {d.dim_att}")
    return d


def _rank(tensors: Dict[str, object], name: str, dim: int, what: str, divisor: int = 1) -> int:
    """A LoRA rank read from one dimension of a matrix (divided by `divisor` for fused ones)."""
    shape = _shape_of(tensors, name, 2, what)
    if shape[dim] % divisor or shape[dim] == 0:
        raise ModelFormatError(f"tensor {name} has shape {list(shape)}: dimension {dim} must be a positive "
                               f"multiple of {divisor} ({what})")
    return shape[dim] // divisor


def _common_dims(tensors: Dict[str, object], n_head: int, head_size: int, ranks=()) -> Dims:
    """V, C from emb; A from att.key; F from ffn.key; L from the names; H and N as given."""
    n_vocab, n_embd = _shape_of(tensors, "emb.weight", 2, "V and C")
    dim_att = _shape_of(tensors, "blocks.0.att.key.weight", 2, "A")[0]
    n_ffn = _shape_of(tensors, "blocks.0.ffn.key.weight", 2, "F")[0]
    return check_dims(Dims(count_layers(tensors), n_embd, dim_att, n_head, head_size, n_ffn, n_vocab,
                           tuple(ranks)))


# ---- RWKV-4 ------------------------------------------------------------------------------------------
def derive_dims_v4(tensors: Dict[str, object]) -> Dims:
    """One "head" spanning all of A: H = 1, N = A."""
    dim_att = _shape_of(tensors, "blocks.0.att.key.weight", 2, "A")[0]
    return _common_dims(tensors, 1, dim_att)


V4_TABLE: Tuple[TensorSpec, ...] = (
    # pattern                                   checkpoint shape  kind    transform
    T("emb.weight",                             "V C",            MATRIX, "fold_ln0"),
    T("blocks.0.ln0.weight",                    "C",              INPUT),
    T("blocks.0.ln0.bias",                      "C",              INPUT),
    T("blocks.{i}.ln1.weight",                  "C",              VECTOR),
    T("blocks.{i}.ln1.bias",                    "C",              VECTOR),
    T("blocks.{i}.ln2.weight",                  "C",              VECTOR),
    T("blocks.{i}.ln2.bias",                    "C",              VECTOR),
    T("blocks.{i}.att.time_mix_k",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_mix_v",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_mix_r",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_decay",              "A",              VECTOR, "neg_exp"),
    T("blocks.{i}.att.time_first",              "A",              VECTOR),
    T("blocks.{i}.att.receptance.weight",       "A C",            MATRIX),
    T("blocks.{i}.att.key.weight",              "A C",            MATRIX),
    T("blocks.{i}.att.value.weight",            "A C",            MATRIX),
    T("blocks.{i}.att.output.weight",           "C A",            MATRIX),
    T("blocks.{i}.ffn.time_mix_k",              "1 1 C",          VECTOR),
    T("blocks.{i}.ffn.time_mix_r",              "1 1 C",          VECTOR),
    T("blocks.{i}.ffn.key.weight",              "F C",            MATRIX),
    T("blocks.{i}.ffn.receptance.weight",       "C C",            MATRIX),
    T("blocks.{i}.ffn.value.weight",            "C F",            MATRIX),
    T("ln_out.weight",                          "C",              VECTOR),
    T("ln_out.bias",                            "C",              VECTOR),
    T("head.weight",                            "V C",            MATRIX),
)


# ---- RWKV-5.0, 5.1, 5.2 ------------------------------------------------------------------------------
def derive_dims_v5(tensors: Dict[str, object]) -> Dims:
    """H, N from time_decay [H, N]."""
    n_head, head_size = _shape_of(tensors, "blocks.0.att.time_decay", 2, "H and N")
    return _common_dims(tensors, n_head, head_size)


def derive_dims_v5_per_head(tensors: Dict[str, object]) -> Dims:
    """5.0 and 5.1: H from time_decay [H]; N = A / H."""
    (n_head,) = _shape_of(tensors, "blocks.0.att.time_decay", 1, "H")
    dim_att = _shape_of(tensors, "blocks.0.att.key.weight", 2, "A")[0]
    if n_head == 0 or dim_att % n_head:
        raise ModelFormatError(f"tensor blocks.0.att.time_decay has {n_head} heads, which do not divide "
                               f"dim_att {dim_att} (blocks.0.att.key.weight)")
    return _common_dims(tensors, n_head, dim_att // n_head)


def _v5_table(version: str) -> Tuple[TensorSpec, ...]:
    """5.2: decay and bonus per channel [H, N], gate. 5.1: per head [H], gate. 5.0: per head, no gate,
    bonus u = exp(time_first) (or time_faaaa as is, in "5.0-faaaa" checkpoints), stored as time_faaaa."""
    hn = "H N" if version == "v5.2" else "H"
    gate = version != "v5.0"
    if version == "v5.0":
        bonus = T("blocks.{i}.att.time_first", hn, VECTOR, "exp", store_as="blocks.{i}.att.time_faaaa")
    else:
        bonus = T("blocks.{i}.att.time_faaaa", hn, VECTOR)
    rows = [
        # pattern                                   checkpoint shape  kind    transform
        T("emb.weight",                             "V C",            MATRIX, "fold_ln0"),
        T("blocks.0.ln0.weight",                    "C",              INPUT),
        T("blocks.0.ln0.bias",                      "C",              INPUT),
        T("blocks.{i}.ln1.weight",                  "C",              VECTOR),
        T("blocks.{i}.ln1.bias",                    "C",              VECTOR),
        T("blocks.{i}.ln2.weight",                  "C",              VECTOR),
        T("blocks.{i}.ln2.bias",                    "C",              VECTOR),
        T("blocks.{i}.att.time_mix_k",              "1 1 C",          VECTOR),
        T("blocks.{i}.att.time_mix_v",              "1 1 C",          VECTOR),
        T("blocks.{i}.att.time_mix_r",              "1 1 C",          VECTOR),
        T("blocks.{i}.att.time_mix_g",              "1 1 C",          VECTOR) if gate else None,
        T("blocks.{i}.att.time_decay",              hn,               VECTOR, "decay"),
        bonus,
        T("blocks.{i}.att.receptance.weight",       "A C",            MATRIX),
        T("blocks.{i}.att.key.weight",              "A C",            MATRIX),
        T("blocks.{i}.att.value.weight",            "A C",            MATRIX),
        T("blocks.{i}.att.gate.weight",             "A C",            MATRIX) if gate else None,
        T("blocks.{i}.att.output.weight",           "C A",            MATRIX),
        T("blocks.{i}.att.ln_x.weight",             "A",              VECTOR),
        T("blocks.{i}.att.ln_x.bias",               "A",              VECTOR),
        T("blocks.{i}.ffn.time_mix_k",              "1 1 C",          VECTOR),
        T("blocks.{i}.ffn.time_mix_r",              "1 1 C",          VECTOR),
        T("blocks.{i}.ffn.key.weight",              "F C",            MATRIX),
        T("blocks.{i}.ffn.receptance.weight",       "C C",            MATRIX),
        T("blocks.{i}.ffn.value.weight",            "C F",            MATRIX),
        T("ln_out.weight",                          "C",              VECTOR),
        T("ln_out.bias",                            "C",              VECTOR),
        T("head.weight",                            "V C",            MATRIX),
    ]
    return tuple(r for r in rows if r is not None)


V5_2_TABLE = _v5_table("v5.2")
V5_1_TABLE = _v5_table("v5.1")
V5_0_TABLE = _v5_table("v5.0")
# 5.0 checkpoints that already hold the bonus as time_faaaa (used as is, as the official loader does)
V5_0_FAAAA_TABLE = tuple(T("blocks.{i}.att.time_faaaa", "H", VECTOR) if r.pattern == "blocks.{i}.att.time_first"
                         else r for r in V5_0_TABLE)


# ---- RWKV-6 ------------------------------------------------------------------------------------------
def derive_dims_v6(tensors: Dict[str, object]) -> Dims:
    """H, N from time_faaaa [H, N]; the LoRA ranks Dm (token-shift mix, time_maa_w1 [C, 5*Dm]) and Dd
    (decay, time_decay_w1 [C, Dd]) from their shapes."""
    n_head, head_size = _shape_of(tensors, "blocks.0.att.time_faaaa", 2, "H and N")
    dm = _rank(tensors, "blocks.0.att.time_maa_w1", 1, "5 x the token-shift LoRA rank", 5)
    dd = _rank(tensors, "blocks.0.att.time_decay_w1", 1, "the decay LoRA rank")
    return _common_dims(tensors, n_head, head_size, (("Dm", dm), ("Dd", dd)))


V6_TABLE: Tuple[TensorSpec, ...] = (
    # pattern                                   checkpoint shape  kind    transform    stored shape
    T("emb.weight",                             "V C",            MATRIX, "fold_ln0"),
    T("blocks.0.ln0.weight",                    "C",              INPUT),
    T("blocks.0.ln0.bias",                      "C",              INPUT),
    T("blocks.{i}.ln1.weight",                  "C",              VECTOR),
    T("blocks.{i}.ln1.bias",                    "C",              VECTOR),
    T("blocks.{i}.ln2.weight",                  "C",              VECTOR),
    T("blocks.{i}.ln2.bias",                    "C",              VECTOR),
    T("blocks.{i}.att.time_maa_x",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_maa_w",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_maa_k",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_maa_v",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_maa_r",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_maa_g",              "1 1 C",          VECTOR),
    T("blocks.{i}.att.time_maa_w1",             "C 5*Dm",         LORA,   "transpose", store="5*Dm C"),
    T("blocks.{i}.att.time_maa_w2",             "5 Dm C",         LORA,   "transpose", store="5 C Dm"),
    T("blocks.{i}.att.time_decay",              "1 1 A",          VECTOR),
    T("blocks.{i}.att.time_decay_w1",           "C Dd",           LORA,   "transpose", store="Dd C"),
    T("blocks.{i}.att.time_decay_w2",           "Dd A",           LORA,   "transpose", store="A Dd"),
    T("blocks.{i}.att.time_faaaa",              "H N",            VECTOR),
    T("blocks.{i}.att.receptance.weight",       "A C",            MATRIX),
    T("blocks.{i}.att.key.weight",              "A C",            MATRIX),
    T("blocks.{i}.att.value.weight",            "A C",            MATRIX),
    T("blocks.{i}.att.gate.weight",             "A C",            MATRIX),
    T("blocks.{i}.att.output.weight",           "C A",            MATRIX),
    T("blocks.{i}.att.ln_x.weight",             "A",              VECTOR),
    T("blocks.{i}.att.ln_x.bias",               "A",              VECTOR),
    T("blocks.{i}.ffn.time_maa_k",              "1 1 C",          VECTOR),
    T("blocks.{i}.ffn.time_maa_r",              "1 1 C",          VECTOR),
    T("blocks.{i}.ffn.key.weight",              "F C",            MATRIX),
    T("blocks.{i}.ffn.receptance.weight",       "C C",            MATRIX),
    T("blocks.{i}.ffn.value.weight",            "C F",            MATRIX),
    T("ln_out.weight",                          "C",              VECTOR),
    T("ln_out.bias",                            "C",              VECTOR),
    T("head.weight",                            "V C",            MATRIX),
)


# ---- RWKV-7 ------------------------------------------------------------------------------------------
def derive_dims_v7(tensors: Dict[str, object]) -> Dims:
    """H, N from r_k [H, N]; the LoRA ranks Dw, Da, Dv, Dg from w1, a1, v1, g1 [C, D]. Layer 0 has no
    value residual, so Dv comes from layer 1 (or from layer 0's unused v1 in a one-layer model)."""
    n_head, head_size = _shape_of(tensors, "blocks.0.att.r_k", 2, "H and N")
    ranks = [("Dw", _rank(tensors, "blocks.0.att.w1", 1, "the decay LoRA rank")),
             ("Da", _rank(tensors, "blocks.0.att.a1", 1, "the in-context learning rate LoRA rank")),
             ("Dg", _rank(tensors, "blocks.0.att.g1", 1, "the gate LoRA rank"))]
    if count_layers(tensors) > 1:
        ranks.append(("Dv", _rank(tensors, "blocks.1.att.v1", 1, "the value residual LoRA rank")))
    elif "blocks.0.att.v1" in tensors:
        ranks.append(("Dv", _rank(tensors, "blocks.0.att.v1", 1, "the value residual LoRA rank")))
    else:
        ranks.append(("Dv", 0))
    return _common_dims(tensors, n_head, head_size, ranks)


V7_TABLE: Tuple[TensorSpec, ...] = (
    # pattern                                   checkpoint shape  kind     transform    stored shape
    T("emb.weight",                             "V C",            MATRIX,  "fold_ln0"),
    T("blocks.0.ln0.weight",                    "C",              INPUT),
    T("blocks.0.ln0.bias",                      "C",              INPUT),
    T("blocks.{i}.ln1.weight",                  "C",              VECTOR),
    T("blocks.{i}.ln1.bias",                    "C",              VECTOR),
    T("blocks.{i}.ln2.weight",                  "C",              VECTOR),
    T("blocks.{i}.ln2.bias",                    "C",              VECTOR),
    T("blocks.{i}.att.x_r",                     "1 1 C",          VECTOR),
    T("blocks.{i}.att.x_w",                     "1 1 C",          VECTOR),
    T("blocks.{i}.att.x_k",                     "1 1 C",          VECTOR),
    T("blocks.{i}.att.x_v",                     "1 1 C",          VECTOR),
    T("blocks.{i}.att.x_a",                     "1 1 C",          VECTOR),
    T("blocks.{i}.att.x_g",                     "1 1 C",          VECTOR),
    T("blocks.{i}.att.w0",                      "1 1 A",          VECTOR),
    T("blocks.{i}.att.w1",                      "C Dw",           LORA,    "transpose", store="Dw C"),
    T("blocks.{i}.att.w2",                      "Dw A",           LORA,    "transpose", store="A Dw"),
    T("blocks.{i}.att.a0",                      "1 1 A",          VECTOR),
    T("blocks.{i}.att.a1",                      "C Da",           LORA,    "transpose", store="Da C"),
    T("blocks.{i}.att.a2",                      "Da A",           LORA,    "transpose", store="A Da"),
    # the value residual: layers 1.. (layer 0's v is v_first itself; its v0/v1/v2, if any, are unused)
    T("blocks.{i}.att.v0",                      "1 1 A",          VECTOR,  layers=LATER_LAYERS),
    T("blocks.{i}.att.v1",                      "C Dv",           LORA,    "transpose", store="Dv C",
      layers=LATER_LAYERS),
    T("blocks.{i}.att.v2",                      "Dv A",           LORA,    "transpose", store="A Dv",
      layers=LATER_LAYERS),
    T("blocks.{i}.att.v0",                      "1 1 A",          IGNORED, layers=FIRST_LAYER, optional=True),
    T("blocks.{i}.att.v1",                      "C Dv",           IGNORED, layers=FIRST_LAYER, optional=True),
    T("blocks.{i}.att.v2",                      "Dv A",           IGNORED, layers=FIRST_LAYER, optional=True),
    T("blocks.{i}.att.g1",                      "C Dg",           LORA,    "transpose", store="Dg C"),
    T("blocks.{i}.att.g2",                      "Dg A",           LORA,    "transpose", store="A Dg"),
    T("blocks.{i}.att.k_k",                     "1 1 A",          VECTOR),
    T("blocks.{i}.att.k_a",                     "1 1 A",          VECTOR),
    T("blocks.{i}.att.r_k",                     "H N",            VECTOR),
    T("blocks.{i}.att.receptance.weight",       "A C",            MATRIX),
    T("blocks.{i}.att.key.weight",              "A C",            MATRIX),
    T("blocks.{i}.att.value.weight",            "A C",            MATRIX),
    T("blocks.{i}.att.output.weight",           "C A",            MATRIX),
    T("blocks.{i}.att.ln_x.weight",             "A",              VECTOR),
    T("blocks.{i}.att.ln_x.bias",               "A",              VECTOR),
    T("blocks.{i}.ffn.x_k",                     "1 1 C",          VECTOR),
    T("blocks.{i}.ffn.key.weight",              "F C",            MATRIX),
    T("blocks.{i}.ffn.value.weight",            "C F",            MATRIX),
    T("ln_out.weight",                          "C",              VECTOR),
    T("ln_out.bias",                            "C",              VECTOR),
    T("head.weight",                            "V C",            MATRIX),
)

SPECS: Dict[str, ArchSpec] = {
    "v4": ArchSpec("v4", 40, derive_dims_v4, V4_TABLE),
    "v5.0": ArchSpec("v5.0", 50, derive_dims_v5_per_head, V5_0_TABLE),
    "v5.1": ArchSpec("v5.1", 51, derive_dims_v5_per_head, V5_1_TABLE),
    "v5.2": ArchSpec("v5.2", 52, derive_dims_v5, V5_2_TABLE),
    "v6": ArchSpec("v6", 60, derive_dims_v6, V6_TABLE),
    "v7": ArchSpec("v7", 70, derive_dims_v7, V7_TABLE),
}
V5_0_FAAAA_SPEC = ArchSpec("v5.0", 50, derive_dims_v5_per_head, V5_0_FAAAA_TABLE)

# Every version the detector knows, with the name used in messages. Only those in SPECS convert.
VERSION_NAMES = {"v4": "RWKV-4", "v5.0": "RWKV-5.0", "v5.1": "RWKV-5.1", "v5.2": "RWKV-5.2",
                 "v6": "RWKV-6", "v7": "RWKV-7"}


# ---- detection ---------------------------------------------------------------------------------------
def _squeeze(shape: Shape) -> Shape:
    """Drop leading dimensions of size 1: (1, 1, C) -> (C,)."""
    i = 0
    while i < len(shape) - 1 and shape[i] == 1:
        i += 1
    return tuple(shape[i:])


def _evidence(tensors: Dict[str, object], name: str) -> str:
    return f"{name} {list(tensors[name].shape)}"  # type: ignore[attr-defined]


def detect_version(tensors: Dict[str, object]) -> Tuple[str, str]:
    """(version, evidence) from BlinkDL-named tensors, e.g. ("v4", "blocks.0.att.time_first [128]")."""
    names = set(tensors)
    att = "blocks.0.att."
    if "emb.weight" not in names and not any(n.startswith("blocks.0.") for n in names):
        sample = ", ".join(sorted(names)[:5]) or "no tensors"
        raise ModelFormatError(f"this does not look like an RWKV checkpoint: no emb.weight and no blocks.0.* "
                               f"tensors (found {sample}{', ...' if len(names) > 5 else ''})")
    for key, version in (("r_k", "v7"), ("x_r", "v7"), ("time_maa_x", "v6")):
        if att + key in names:
            return version, _evidence(tensors, att + key)
    if att + "ln_x.weight" in names:  # the RWKV-5 family: time_decay [H, N] is 5.2; [H] with a gate 5.1
        decay = att + "time_decay"
        if decay not in names:
            raise ModelFormatError(f"tensor {decay} is missing (an RWKV-5 checkpoint: its shape tells 5.0 and "
                                   "5.1 [H] from 5.2 [H, N])")
        if len(tensors[decay].shape) == 2:  # type: ignore[attr-defined]
            return "v5.2", _evidence(tensors, decay)
        if att + "gate.weight" in names:
            return "v5.1", f"{_evidence(tensors, decay)} and {_evidence(tensors, att + 'gate.weight')}"
        return "v5.0", f"{_evidence(tensors, decay)} and no gate"
    if att + "time_first" in names:
        return "v4", _evidence(tensors, att + "time_first")
    found = sorted(n for n in names if n.startswith(att))[:8]
    raise UnsupportedModelError(f"an RWKV-like checkpoint of no known version: blocks.0.att has "
                                f"{', '.join(found) or 'no tensors'}")


def _spec_and_evidence(tensors: Dict[str, object]) -> Tuple[ArchSpec, str]:
    version, evidence = detect_version(tensors)
    if version == "v5.0" and "blocks.0.att.time_faaaa" in tensors:
        return V5_0_FAAAA_SPEC, evidence
    spec = SPECS.get(version)
    if spec is None:
        raise UnsupportedModelError(f"found an {VERSION_NAMES[version]} checkpoint ({evidence}); supported: "
                                    f"{', '.join(SPECS)}")
    return spec, evidence


def spec_for(tensors: Dict[str, object]) -> ArchSpec:
    """The table to convert these tensors with; UnsupportedModelError for a version without one."""
    return _spec_and_evidence(tensors)[0]


# ---- planning ----------------------------------------------------------------------------------------
def _check_shape(name: str, tensor: object, row: TensorSpec, dims: Dims) -> Shape:
    """Check a tensor's checkpoint shape against its row; return the shape it is stored with.

    Matrices must match exactly. Vectors may differ in leading 1s (`(1,1,C)` and `[C]` are both
    accepted) and are stored without the dimensions the table writes as "1"; LoRA matrices are stored
    in the row's `store` shape."""
    want: Shape = dims.resolve(row.shape)
    have: Shape = tuple(tensor.shape)  # type: ignore[attr-defined]
    exact = row.kind in (MATRIX, LORA) or (row.kind == IGNORED and len(row.shape) == 2)
    ok = have == want if exact else _squeeze(have) == _squeeze(want)
    if not ok:
        source_name = getattr(tensor, "name", name)
        aka = f"; the checkpoint calls it {source_name}" if source_name != name else ""
        raise ModelFormatError(f"tensor {name} has shape {list(have)}, expected {list(want)} "
                               f"({dims.describe()}){aka}")
    if row.store is not None:
        return dims.resolve(row.store)
    return tuple(d for d, s in zip(want, row.shape) if s != "1")


def _rows_in_order(table: Tuple[TensorSpec, ...], n_layer: int) -> List[Tuple[str, TensorSpec]]:
    """(name, row) in file order: table order, with each run of `{i}` rows repeated layer by layer
    (a row only for the layers it applies to)."""
    out: List[Tuple[str, TensorSpec]] = []
    i = 0
    while i < len(table):
        if "{i}" not in table[i].pattern:
            out.append((table[i].pattern, table[i]))
            i += 1
            continue
        j = i
        while j < len(table) and "{i}" in table[j].pattern:
            j += 1
        for layer in range(n_layer):
            out.extend((row.pattern.format(i=layer), row) for row in table[i:j] if row.applies_to(layer))
        i = j
    return out


def plan_model(tensors: Dict[str, object]) -> ModelPlan:
    """Detect the version, derive the dimensions, check every tensor's presence and shape."""
    spec, evidence = _spec_and_evidence(tensors)
    try:
        dims = spec.derive_dims(tensors)
    except ModelFormatError as e:  # say what the checkpoint was taken for
        raise ModelFormatError(f"{e}; this looks like an {VERSION_NAMES[spec.version]} checkpoint "
                               f"({evidence})") from None
    rows = _rows_in_order(spec.table, dims.n_layer)
    for name, row in rows:  # every tensor present and well-shaped before anything else
        if name not in tensors and not row.optional:
            raise ModelFormatError(f"tensor {name} is missing (expected shape {list(dims.resolve(row.shape))} "
                                   f"for {spec.version})")
    planned: List[PlannedTensor] = []
    for name, row in rows:
        if name not in tensors:
            continue
        stored = _check_shape(name, tensors[name], row, dims)
        dtype = tensors[name].dtype  # type: ignore[attr-defined]
        if dtype not in FLOAT_DTYPES:
            raise ModelFormatError(f"tensor {name} has dtype {dtype}; weights must be floating point")
        if row.kind in (INPUT, IGNORED):
            continue
        transform = TRANSFORMS[row.transform] if row.transform else None
        if transform is not None and transform.whole and row.kind == MATRIX:
            raise AssertionError(f"{name}: transform {row.transform} needs the whole tensor; MATRIX rows stream")
        inputs = [tensors[n] for n in transform.inputs] if transform else []
        out_name = row.store_as.format(i=name.split(".")[1]) if row.store_as else name
        planned.append(PlannedTensor(out_name, stored, row.kind, tensors[name], transform, inputs,
                                     row.quantizable))
    used = {name for name, _row in rows}
    extra = sorted(set(tensors) - used)
    if extra:
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise ModelFormatError(f"unexpected tensor(s) for {spec.version}: {', '.join(extra[:5])}{more}")
    return ModelPlan(spec.version, spec.arch_id, dims, planned)
