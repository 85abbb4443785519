"""Hugging Face checkpoints: finding the weights in a model directory, and mapping tensor names to
BlinkDL's (docs: RWKV_REFERENCE.md §5).

Three naming schemes are recognised, by the names themselves (never by config.json, whose
`architectures` field is wrong for v5 and whose `intermediate_size` may be null):

  blinkdl  `emb.weight`, `blocks.{i}.att.time_decay`, ...            used as is
  hf       `rwkv.embeddings.weight`, `rwkv.blocks.{i}.attention...`   v4, v5, v6 (transformers / remote code)
  fla      `model.embeddings.weight`, `model.layers.{i}.attn...`     v7 (flash-linear-attention)

Mapping keeps the values; only fla's LoRA matrices are stored transposed, and are read transposed.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import ModelFormatError
from .safetensors_reader import looks_like_safetensors, open_safetensors, open_sharded
from .tensors import Checkpoint, TransposedTensor, map_file
from .torch_zip import is_torch_zip, open_torch_zip, not_a_zip_error

# Weight files of a Hugging Face model directory, in the order they are looked for.
HF_WEIGHT_FILES: List[Tuple[str, str]] = [
    ("model.safetensors", "hf-safetensors"),
    ("model.safetensors.index.json", "hf-safetensors"),
    ("pytorch_model.bin", "hf-bin"),
    ("pytorch_model.bin.index.json", "hf-bin"),
]


def open_hf_directory(path: str) -> Checkpoint:
    """Open the weights of a Hugging Face model directory (names not yet mapped)."""
    for file_name, source_format in HF_WEIGHT_FILES:
        full = os.path.join(path, file_name)
        if os.path.isfile(full):
            ckpt = open_weights_file(full, source_format)
            ckpt.path = path
            return ckpt
    raise ModelFormatError(f"{path}: no weights found (looked for {', '.join(f for f, _ in HF_WEIGHT_FILES)})")


def open_weights_file(path: str, source_format: Optional[str] = None) -> Checkpoint:
    """Open one weights file, or an index of shards, recognising it by its content (index: by name)."""
    if path.endswith(".index.json"):
        bin_shards = path.endswith("pytorch_model.bin.index.json")
        fmt = source_format or ("hf-bin" if bin_shards else "hf-safetensors")
        return open_sharded(path, fmt, open_weights_file)
    mm, _size = map_file(path)
    try:
        head = bytes(mm[:512])
    finally:
        mm.close()
    if is_torch_zip(head):
        return open_torch_zip(path, source_format or "pth")
    if looks_like_safetensors(head):
        return open_safetensors(path, source_format or "safetensors")
    raise not_a_zip_error(path, head)


# ---- names -------------------------------------------------------------------------------------------
_HF_RULES: List[Tuple[str, str]] = [  # applied in order to names with the `rwkv.` prefix removed
    (r"^embeddings\.", "emb."),
    (r"^blocks\.(\d+)\.pre_ln\.", r"blocks.\1.ln0."),
    (r"\.attention\.", ".att."),
    (r"\.feed_forward\.", ".ffn."),
    (r"\.time_mix_key$", ".time_mix_k"),
    (r"\.time_mix_value$", ".time_mix_v"),
    (r"\.time_mix_receptance$", ".time_mix_r"),
    (r"\.time_mix_gate$", ".time_mix_g"),
]

# fla (v7): full-name patterns -> (BlinkDL name, transposed?)
_FLA_RULES: List[Tuple[str, str, bool]] = [
    (r"^model\.embeddings\.weight$", "emb.weight", False),
    (r"^model\.norm\.(weight|bias)$", r"ln_out.\1", False),
    (r"^lm_head\.weight$", "head.weight", False),
    (r"^model\.layers\.(\d+)\.pre_norm\.(weight|bias)$", r"blocks.\1.ln0.\2", False),
    (r"^model\.layers\.(\d+)\.attn_norm\.(weight|bias)$", r"blocks.\1.ln1.\2", False),
    (r"^model\.layers\.(\d+)\.ffn_norm\.(weight|bias)$", r"blocks.\1.ln2.\2", False),
    (r"^model\.layers\.(\d+)\.attn\.r_proj\.weight$", r"blocks.\1.att.receptance.weight", False),
    (r"^model\.layers\.(\d+)\.attn\.k_proj\.weight$", r"blocks.\1.att.key.weight", False),
    (r"^model\.layers\.(\d+)\.attn\.v_proj\.weight$", r"blocks.\1.att.value.weight", False),
    (r"^model\.layers\.(\d+)\.attn\.o_proj\.weight$", r"blocks.\1.att.output.weight", False),
    (r"^model\.layers\.(\d+)\.attn\.g_norm\.(weight|bias)$", r"blocks.\1.att.ln_x.\2", False),
    (r"^model\.layers\.(\d+)\.attn\.(x_[rwkvag]|k_k|k_a|r_k)$", r"blocks.\1.att.\2", False),
    (r"^model\.layers\.(\d+)\.attn\.([wavg])_lora\.lora\.0\.weight$", r"blocks.\1.att.\g<2>1", True),
    (r"^model\.layers\.(\d+)\.attn\.([wavg])_lora\.lora\.2\.weight$", r"blocks.\1.att.\g<2>2", True),
    (r"^model\.layers\.(\d+)\.attn\.([wav])_lora\.lora\.2\.bias$", r"blocks.\1.att.\g<2>0", False),
    (r"^model\.layers\.(\d+)\.ffn\.(x_k|key\.weight|value\.weight)$", r"blocks.\1.ffn.\2", False),
]


def naming_scheme(names: List[str]) -> str:
    """'hf', 'fla' or 'blinkdl', judged from the tensor names."""
    if any(n.startswith("rwkv.") for n in names):
        return "hf"
    if any(n.startswith(("model.layers.", "model.embeddings.")) or n == "lm_head.weight" for n in names):
        return "fla"
    return "blinkdl"


def hf_to_blinkdl(name: str) -> Optional[str]:
    """An `rwkv.`-prefixed (v4-v6) name -> BlinkDL name; None if the name follows no rule."""
    if name == "head.weight":
        return name
    if not name.startswith("rwkv."):
        return None
    out = name[len("rwkv."):]
    for pattern, repl in _HF_RULES:
        out = re.sub(pattern, repl, out)
    return out


def fla_to_blinkdl(name: str) -> Optional[Tuple[str, bool]]:
    """An fla (v7) name -> (BlinkDL name, stored transposed?); None if the name follows no rule."""
    for pattern, repl, transposed in _FLA_RULES:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name), transposed
    return None


def to_blinkdl_names(tensors: Dict[str, object]) -> Tuple[Dict[str, object], str]:
    """Rename a checkpoint's tensors to BlinkDL names. Returns (renamed, scheme).

    A name that follows no rule of its scheme keeps its original spelling, so that the architecture
    check reports it as an unexpected tensor by the name the user's file uses."""
    scheme = naming_scheme(list(tensors))
    if scheme == "blinkdl":
        return dict(tensors), scheme
    out: Dict[str, object] = {}
    for name, tensor in tensors.items():
        new, transposed = _map_one(name, scheme)
        if transposed:
            tensor = TransposedTensor(new, tensor)  # type: ignore[arg-type]
        if new in out:
            raise ModelFormatError(f"two tensors map to {new} (the second is {name})")
        out[new] = tensor
    return out, scheme


def _map_one(name: str, scheme: str) -> Tuple[str, bool]:
    mapper: Callable[[str], object] = hf_to_blinkdl if scheme == "hf" else fla_to_blinkdl
    mapped = mapper(name)
    if mapped is None:
        return name, False
    if isinstance(mapped, tuple):
        return mapped[0], mapped[1]
    return str(mapped), False
