"""Random RWKV weights with the magnitudes of trained checkpoints, as *specs*: every tensor's name, shape and
distribution, listed without drawing a single number. Two users realise them:

* `tools/make_reference.py` (the reference fixtures): `make_weights` draws every spec in list order from one
  generator, whole tensors, float32 (small models; the official package is run on them).
* `rwkv_cpu.bench.maker` (`rwkv-cpu bench make`): streams each tensor in row chunks from its own generator,
  so a 7B checkpoint is written with bounded memory.

Magnitudes (RWKV_REFERENCE.md, and the shared random fixtures): unit-scale LayerNorm weights, projections
with std 1/sqrt(fan_in) (output and FFN value halved), decays spread so that some channels forget within a
token and others remember for hundreds, LoRA terms large enough to move the mixes and decays by tenths.

Dimensions `d`: L layers, C width, V vocab, F FFN size, H heads x N head size (v5+), and the LoRA ranks
Dm, Dd (v6) and Dw, Da, Dv, Dg (v7). `shape_of` sizes a model of a given width as BlinkDL's training code
does; `PRESETS` names the benchmark shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

VERSIONS = ("v4", "v5.0", "v5.1", "v5.2", "v6", "v7")


@dataclass(frozen=True)
class Spec:
    """One tensor: values mean + std * N(0, 1), plus linspace(*ramp) along the tensor when ramp is set."""
    name: str                        # BlinkDL name
    shape: Tuple[int, ...]
    mean: float = 0.0
    std: float = 1.0
    ramp: Optional[Tuple[float, float]] = None


# ---- the distributions -------------------------------------------------------------------------------
def normal(name: str, shape, mean: float = 0.0, std: float = 1.0) -> Spec:
    return Spec(name, tuple(int(s) for s in shape), float(mean), float(std))


def matrix(name: str, out: int, inp: int, gain: float = 1.0) -> Spec:
    """[out, in], std gain/sqrt(in): unit-scale outputs for unit-scale inputs."""
    return normal(name, (out, inp), 0.0, gain / np.sqrt(inp))


def layer_norm(prefix: str, n: int) -> List[Spec]:
    return [normal(prefix + ".weight", (n,), 1.0, 0.1), normal(prefix + ".bias", (n,), 0.0, 0.05)]


def mix(name: str, c: int, mean: float = 0.6) -> Spec:
    return normal(name, (1, 1, c), mean, 0.27)


# ---- per version (the order of each list is the order make_weights draws in) ----------------------------
def _common(d: dict) -> List[Spec]:
    L, C, V = d["L"], d["C"], d["V"]
    out = [normal("emb.weight", (V, C), 0.0, 0.3)] + layer_norm("blocks.0.ln0", C)
    for i in range(L):
        out += layer_norm(f"blocks.{i}.ln1", C) + layer_norm(f"blocks.{i}.ln2", C)
    return out + layer_norm("ln_out", C) + [matrix("head.weight", V, C, 2.0)]


def _ffn_v4_v6(d: dict, i: int, maa: bool) -> List[Spec]:
    C, F = d["C"], d["F"]
    p = f"blocks.{i}.ffn."
    if maa:
        out = [mix(p + "time_maa_k", C, 0.5), mix(p + "time_maa_r", C, 0.5)]
    else:
        out = [mix(p + "time_mix_k", C), mix(p + "time_mix_r", C)]
    return out + [matrix(p + "key.weight", F, C), matrix(p + "receptance.weight", C, C),
                  matrix(p + "value.weight", C, F, 0.5)]


def _ln_x(p: str, A: int) -> List[Spec]:
    return [normal(p + "ln_x.weight", (A,), 0.5, 0.16), normal(p + "ln_x.bias", (A,), 0.0, 0.05)]


def specs_v4(d: dict) -> List[Spec]:
    out = _common(d)
    C = d["C"]
    for i in range(d["L"]):
        p = f"blocks.{i}.att."
        out.append(normal(p + "time_decay", (C,), -1.2, 2.4))  # w = -exp(.): forget within a token .. for long
        out.append(normal(p + "time_first", (C,), -1.2, 0.45))
        out += [mix(p + f"time_mix_{x}", C) for x in "kvr"]
        out += [matrix(p + f"{x}.weight", C, C) for x in ("key", "value", "receptance")]
        out.append(matrix(p + "output.weight", C, C, 0.5))
        out += _ffn_v4_v6(d, i, maa=False)
    return out


def specs_v5(d: dict, version: str) -> List[Spec]:
    out = _common(d)
    C, H, N = d["C"], d["H"], d["N"]
    A = H * N
    for i in range(d["L"]):
        p = f"blocks.{i}.att."
        if version == "v5.2":
            out += [normal(p + "time_decay", (H, N), -3.8, 1.5), normal(p + "time_faaaa", (H, N), 0.25, 0.19)]
        else:  # one decay and bonus per head, spread over heads
            out.append(Spec(p + "time_decay", (H,), 0.0, 0.2, ramp=(-4.5, -0.5)))
            if version == "v5.0":
                out.append(normal(p + "time_first", (H,), -0.7, 0.5))  # u = exp(time_first)
            else:
                out.append(normal(p + "time_faaaa", (H,), 0.25, 0.19))
        gated = version != "v5.0"
        out += [mix(p + f"time_mix_{x}", C, 0.7) for x in "kvr" + ("g" if gated else "")]
        out += [matrix(p + f"{x}.weight", A, C) for x in ("key", "value", "receptance") + (("gate",) if gated else ())]
        out.append(matrix(p + "output.weight", C, A, 0.5))
        out += _ln_x(p, A)
        out += _ffn_v4_v6(d, i, maa=False)
    return out


def specs_v6(d: dict) -> List[Spec]:
    out = _common(d)
    C, H, N, Dm, Dd = d["C"], d["H"], d["N"], d["Dm"], d["Dd"]
    A = H * N
    for i in range(d["L"]):
        p = f"blocks.{i}.att."
        out += [mix(p + f"time_maa_{x}", C, 0.5) for x in "xwkvrg"]
        out.append(normal(p + "time_maa_w1", (C, 5 * Dm), 0.0, 0.05))  # used as x @ w1
        out.append(normal(p + "time_maa_w2", (5, Dm, C), 0.0, 0.15))
        out.append(normal(p + "time_decay", (1, 1, A), -3.8, 1.5))
        out.append(normal(p + "time_decay_w1", (C, Dd), 0.0, 0.05))
        out.append(normal(p + "time_decay_w2", (Dd, A), 0.0, 0.3))
        out.append(normal(p + "time_faaaa", (H, N), 0.25, 0.19))
        out += [matrix(p + f"{x}.weight", A, C) for x in ("receptance", "key", "value", "gate")]
        out.append(matrix(p + "output.weight", C, A, 0.5))
        out += _ln_x(p, A)
        out += _ffn_v4_v6(d, i, maa=True)
    return out


def specs_v7(d: dict) -> List[Spec]:
    out = _common(d)
    C, H, N, F = d["C"], d["H"], d["N"], d["F"]
    A = H * N
    for i in range(d["L"]):
        p = f"blocks.{i}.att."
        out += [mix(p + f"x_{x}", C, 0.5) for x in "rwkvag"]
        # layer 0 has v0/v1/v2 too in BlinkDL checkpoints (unused: its v is v_first)
        for name, D, mean0, std0, std2 in (("w", d["Dw"], -1.0, 1.5, 0.3), ("a", d["Da"], -0.2, 0.5, 0.3),
                                           ("v", d["Dv"], 0.5, 0.5, 0.3)):
            out.append(normal(p + f"{name}0", (1, 1, A), mean0, std0))
            out.append(normal(p + f"{name}1", (C, D), 0.0, 0.05))  # used as x @ {name}1
            out.append(normal(p + f"{name}2", (D, A), 0.0, std2))
        out += [normal(p + "g1", (C, d["Dg"]), 0.0, 0.05), normal(p + "g2", (d["Dg"], A), 0.0, 0.2)]
        out += [normal(p + "k_k", (1, 1, A), 0.85, 0.15), normal(p + "k_a", (1, 1, A), 1.0, 0.2),
                normal(p + "r_k", (H, N), 0.0, 0.3)]
        out += [matrix(p + f"{x}.weight", A, C) for x in ("receptance", "key", "value")]
        out.append(matrix(p + "output.weight", C, A, 0.5))
        out += _ln_x(p, A)
        f = f"blocks.{i}.ffn."
        out += [mix(f + "x_k", C, 0.5), matrix(f + "key.weight", F, C), matrix(f + "value.weight", C, F, 0.5)]
    return out


def make_specs(version: str, d: dict) -> List[Spec]:
    """Every tensor of a BlinkDL checkpoint of this version and these dimensions."""
    if version == "v4":
        return specs_v4(d)
    if version.startswith("v5"):
        return specs_v5(d, version)
    if version == "v6":
        return specs_v6(d)
    if version == "v7":
        return specs_v7(d)
    raise ValueError(f"unknown RWKV version {version!r} (one of {', '.join(VERSIONS)})")


def make_weights(version: str, d: dict, seed: int) -> Dict[str, np.ndarray]:
    """The whole checkpoint in memory: float32 arrays drawn in spec order from one generator (small models)."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in make_specs(version, d):
        values = (s.mean + s.std * rng.standard_normal(s.shape)).astype(np.float32)
        if s.ramp is not None:
            values = np.linspace(s.ramp[0], s.ramp[1], s.shape[0]).astype(np.float32) + values
        out[s.name] = values
    return out


# ---- shapes ----------------------------------------------------------------------------------------------
def shape_of(version: str, C: int, L: int, V: int, F: Optional[int] = None) -> dict:
    """Dimensions of a model of width C: head size 64, each version's FFN size and LoRA ranks (the formulas of
    BlinkDL's training code, RWKV-LM); F overrides the FFN size."""
    d = dict(L=L, C=C, V=V, H=C // 64, N=64)
    r = lambda x: max(32, int(round(x / 32)) * 32)  # noqa: E731
    if version.startswith("v5") or version == "v6":
        d["F"] = int(3.5 * C) // 32 * 32
    else:  # v4, v7
        d["F"] = 4 * C
    if F is not None:
        d["F"] = F
    if version == "v6":
        d.update(Dm=32 if C < 4096 else 64, Dd=64 if C < 4096 else 128)
    if version == "v7":
        d.update(Dw=r(1.8 * C ** 0.5), Da=r(1.8 * C ** 0.5), Dv=r(1.3 * C ** 0.5), Dg=r(0.6 * C ** 0.8))
    return d


# name -> (layers, width, FFN size or None for the version's own, vocab)
PRESETS = {
    "tiny": (2, 64, None, 256),          # for tests: seconds to make, convert and run
    "0.1b": (12, 768, None, 65536),
    "1.5b": (24, 2048, None, 65536),
    "eagle-7b": (32, 4096, 14336, 65536),
}


def preset_dims(preset: str, version: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (one of {', '.join(PRESETS)})")
    L, C, F, V = PRESETS[preset]
    return shape_of(version, C, L, V, F)


# ---- Hugging Face layouts --------------------------------------------------------------------------------
def hf_name(name: str, version: str) -> str:
    """BlinkDL name -> transformers / Rwkv5 / Rwkv6 remote-code name (RWKV_REFERENCE.md §5.1)."""
    if name == "head.weight":
        return name
    out = name.replace("emb.", "embeddings.", 1) if name.startswith("emb.") else name
    out = out.replace("blocks.0.ln0.", "blocks.0.pre_ln.").replace(".att.", ".attention.")
    out = out.replace(".ffn.", ".feed_forward.")
    if version != "v6":
        for short, long in (("k", "key"), ("v", "value"), ("r", "receptance"), ("g", "gate")):
            if out.endswith(f".time_mix_{short}"):
                out = out[:-len(short)] + long
    return "rwkv." + out


_FLA_SIMPLE = {"ln0.weight": "pre_norm.weight", "ln0.bias": "pre_norm.bias", "ln1.weight": "attn_norm.weight",
               "ln1.bias": "attn_norm.bias", "ln2.weight": "ffn_norm.weight", "ln2.bias": "ffn_norm.bias",
               "att.receptance.weight": "attn.r_proj.weight", "att.key.weight": "attn.k_proj.weight",
               "att.value.weight": "attn.v_proj.weight", "att.output.weight": "attn.o_proj.weight",
               "att.ln_x.weight": "attn.g_norm.weight", "att.ln_x.bias": "attn.g_norm.bias",
               "ffn.key.weight": "ffn.key.weight", "ffn.value.weight": "ffn.value.weight"}


def fla_name(name: str) -> Optional[Tuple[str, str]]:
    """BlinkDL v7 name -> (fla RWKV7ForCausalLM name, how the values change: "" as is, "flat" to 1-D, "T"
    transposed), or None for a tensor fla lacks (layer 0's value-residual LoRA). RWKV_REFERENCE.md §5.5."""
    parts = name.split(".")
    if name == "emb.weight":
        return "model.embeddings.weight", ""
    if name.startswith("ln_out."):
        return "model.norm." + parts[1], ""
    if name == "head.weight":
        return "lm_head.weight", ""
    i, rest = parts[1], ".".join(parts[2:])
    pre = f"model.layers.{i}."
    if rest in _FLA_SIMPLE:
        return pre + _FLA_SIMPLE[rest], ""
    if rest in ("att.k_k", "att.k_a", "ffn.x_k"):
        return pre + rest.replace("att.", "attn."), "flat"  # fla: [C]
    if rest.startswith("att.x_") or rest == "att.r_k":
        return pre + rest.replace("att.", "attn."), ""
    if len(rest) == 6 and rest[4] in "wavg" and rest[5] in "012":
        lora, which = rest[4], rest[5]
        if lora == "v" and i == "0":
            return None  # fla's layer 0 has no value residual
        key = pre + f"attn.{lora}_lora.lora."
        return {"0": (key + "2.bias", "flat"), "1": (key + "0.weight", "T"), "2": (key + "2.weight", "T")}[which]
    raise KeyError(f"no fla name for {name}")


def fla_tensors(w: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """BlinkDL v7 tensors -> fla RWKV7ForCausalLM tensors."""
    out = {}
    for name, t in w.items():
        target = fla_name(name)
        if target is not None:
            out[target[0]] = to_hf_values(t, target[1])
    return out


def to_hf_values(t: np.ndarray, how: str) -> np.ndarray:
    if how == "flat":
        return t.reshape(-1)
    if how == "T":
        return np.ascontiguousarray(t.T)
    return t


def hf_tensor(name: str, version: str) -> Optional[Tuple[str, str]]:
    """(Hugging Face name, value change) of a BlinkDL tensor in the layout of its version; None: not stored."""
    return fla_name(name) if version == "v7" else (hf_name(name, version), "")


def hf_config(version: str, d: dict) -> dict:
    C, L, V = d["C"], d["L"], d["V"]
    if version == "v4":
        return {"architectures": ["RwkvForCausalLM"], "attention_hidden_size": C, "bos_token_id": 0,
                "context_length": 1024, "eos_token_id": 0, "hidden_size": C, "intermediate_size": d["F"],
                "layer_norm_epsilon": 1e-05, "model_type": "rwkv", "num_hidden_layers": L, "rescale_every": 6,
                "tie_word_embeddings": False, "vocab_size": V}
    if version.startswith("v5"):
        return {"architectures": ["RwkvForCausalLM"], "attention_hidden_size": C, "head_size": d["N"],
                "hidden_size": C, "intermediate_size": d["F"], "layer_norm_epsilon": 1e-05, "model_type": "rwkv5",
                "model_version": version[1:].replace(".", "_"), "num_hidden_layers": L, "rescale_every": 6,
                "tie_word_embeddings": False, "vocab_size": V,
                "auto_map": {"AutoConfig": "configuration_rwkv5.Rwkv5Config",
                             "AutoModelForCausalLM": "modeling_rwkv5.Rwkv5ForCausalLM"}}
    if version == "v6":
        return {"architectures": ["Rwkv6ForCausalLM"], "attention_hidden_size": C, "head_size": d["N"],
                "head_size_divisor": 8, "hidden_size": C, "intermediate_size": d["F"], "layer_norm_epsilon": 1e-05,
                "model_type": "rwkv6", "num_hidden_layers": L, "rescale_every": 6, "tie_word_embeddings": False,
                "vocab_size": V, "auto_map": {"AutoConfig": "configuration_rwkv6.Rwkv6Config",
                                              "AutoModelForCausalLM": "modeling_rwkv6.Rwkv6ForCausalLM"}}
    return {"architectures": ["RWKV7ForCausalLM"], "model_type": "rwkv7", "hidden_size": C, "head_dim": d["N"],
            "num_heads": d["H"], "num_hidden_layers": L, "intermediate_size": d["F"], "vocab_size": V,
            "decay_low_rank_dim": d["Dw"], "a_low_rank_dim": d["Da"], "v_low_rank_dim": d["Dv"],
            "gate_low_rank_dim": d["Dg"], "norm_eps": 1e-05, "tie_word_embeddings": False}
