#!/usr/bin/env python3
"""Reference fixtures for every RWKV version: a random-weight checkpoint with trained-like magnitudes, in
both layouts, and the official `rwkv` package's logits and final state on it.

    /tmp/venv-ref/bin/python tools/make_reference.py v7 tests/data          # -> tests/data/random-7v0/
    /tmp/venv-ref/bin/python tools/make_reference.py all tests/data

Dev-only: it needs torch and the official `rwkv` package (0.8.32), which are never dependencies of the
install, the tests or CI. Install them in a private venv:

    python3 -m venv /tmp/venv-ref && /tmp/venv-ref/bin/pip install torch==2.13.0 rwkv==0.8.32 numpy safetensors

What it writes, per fixture directory (the format of the shared fixtures, see tests/data/README.md):

    model.pth             BlinkDL layout: torch.save of a dict name -> bf16 tensor, BlinkDL names and shapes
    hf/config.json        Hugging Face layout, the same values: transformers' RwkvForCausalLM names (v4),
    hf/model.safetensors  the Rwkv5/Rwkv6 remote-code names (v5, v6), fla's RWKV7ForCausalLM names (v7,
                          LoRA matrices transposed, w0/a0/v0 as the LoRA biases)
    tokens.json           the input text and its byte-level token ids (vocab 256)
    logits.npy            float32 [n_tokens, 256]: row t = the official logits after ids[0..t]
    state.npz             float32 final state, one array per `blocks.<i>.<entry>` (docs/FILE_FORMAT.md)
    (and an entry in OUT/manifest.json: dimensions, package versions, checks passed)

How the reference is run: `rwkv.model.RWKV(path, "cpu fp32")` (for v7 `RWKV_V7_ON=1`, which makes RWKV the
`RWKV_x070` class) on a FLOAT32 copy of the stored bf16 values, tokens fed one at a time from a zero state
(RNN mode). Loading the bf16 file directly would make the package fold ln0 into the embedding in bf16
(RWKV_REFERENCE.md §6.7); the f32 copy gives exact fp32 maths on the bf16 weights. The package's sequence
mode is run too, and must agree within 5e-5 (recorded as rnn_vs_seq_max_abs).

Magnitudes follow trained checkpoints (and the shared random fixtures): unit-scale LayerNorm weights,
projections with std 1/sqrt(fan_in) (output and FFN value halved), decays spread so that some channels
forget within a token and others remember for hundreds, LoRA terms large enough to move the mixes and
decays by tenths, so that every layer, channel-mix and the data-dependent paths all matter.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

TEXT = "\"in the beginning there was a small village, and the people lived by the sea."

# name -> (version, dims). LoRA ranks differ from each other so that a mixed-up rank cannot go unnoticed.
FIXTURES = {
    "random-4v0-gen": ("v4", dict(L=4, C=128, F=512, V=256)),
    "random-5v0": ("v5.0", dict(L=3, C=64, H=4, N=16, F=224, V=256)),
    "random-5v1": ("v5.1", dict(L=3, C=64, H=4, N=16, F=224, V=256)),
    "random-5v2-gen": ("v5.2", dict(L=3, C=64, H=4, N=16, F=224, V=256)),
    "random-6v0": ("v6", dict(L=3, C=128, H=2, N=64, F=448, V=256, Dm=16, Dd=32)),
    "random-7v0": ("v7", dict(L=3, C=128, H=2, N=64, F=512, V=256, Dw=32, Da=24, Dv=16, Dg=48)),
}
# v4 and v5.2 have shared fixtures (random-4v0, random-5v2); the tool's own are named *-gen so as not to clash
VERSION_OF_NAME = {"v4": "random-4v0-gen", "v5.0": "random-5v0", "v5.1": "random-5v1", "v5.2": "random-5v2-gen",
                   "v6": "random-6v0", "v7": "random-7v0"}


# ---- random weights and Hugging Face layouts: rwkv_cpu/bench/weights.py (shared with `rwkv-cpu bench make`) --
def _load_weights_module():
    """rwkv_cpu/bench/weights.py by path: numpy only, so this venv needs neither the package nor its C library."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "rwkv_cpu", "bench", "weights.py")
    spec = importlib.util.spec_from_file_location("rwkv_bench_weights", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_weights = _load_weights_module()
make_weights, hf_name, fla_tensors, hf_config = (_weights.make_weights, _weights.hf_name, _weights.fla_tensors,
                                                 _weights.hf_config)


# ---- the official package ----------------------------------------------------------------------------
STATE_NAMES = {"v4": ["att_x_prev", "att_aa", "att_bb", "att_pp", "ffn_x_prev"],
               "v5": ["att_x_prev", "att_kv", "ffn_x_prev"],
               "v7": ["att_x_prev", "att_vk", "ffn_x_prev"]}


def state_names(version: str):
    return STATE_NAMES["v4" if version == "v4" else "v7" if version == "v7" else "v5"]


def run_reference(version: str, f32_path: str, ids: list):
    """(logits [T, V], final state dict, max |RNN - sequence mode|) from the official package."""
    os.environ["RWKV_JIT_ON"] = "1"
    os.environ["RWKV_CUDA_ON"] = "0"
    if version == "v7":
        os.environ["RWKV_V7_ON"] = "1"  # must be set before rwkv.model is imported: RWKV becomes RWKV_x070
    import torch
    from rwkv.model import RWKV

    torch.set_num_threads(1)
    model = RWKV(f32_path[:-len(".pth")] if version == "v7" else f32_path, "cpu fp32")
    state = None
    rows = []
    for tok in ids:
        out, state = model.forward([tok], state)
        rows.append(out.detach().float().numpy().copy())
    logits = np.stack(rows).astype(np.float32)
    seq, _ = model.forward(list(ids), None, full_output=True)
    rnn_vs_seq = float(np.abs(seq.detach().float().numpy() - logits).max())
    names = state_names(version)
    n = len(names)
    final = {}
    for i in range(len(state) // n):
        for j, entry in enumerate(names):
            final[f"blocks.{i}.{entry}"] = state[i * n + j].detach().float().numpy().copy()
    return logits, final, rnn_vs_seq


# ---- one fixture -------------------------------------------------------------------------------------
def bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even), returned as float32."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def make_fixture(name: str, out_root: str, seed: int) -> dict:
    import torch
    from safetensors.torch import save_file

    version, d = FIXTURES[name]
    out = os.path.join(out_root, name)
    os.makedirs(os.path.join(out, "hf"), exist_ok=True)
    w = {k: bf16_round(v) for k, v in make_weights(version, d, seed).items()}  # the values, exactly bf16
    ids = list(TEXT.encode("utf-8"))

    torch.save({k: torch.from_numpy(v).to(torch.bfloat16) for k, v in w.items()}, os.path.join(out, "model.pth"))
    hf = fla_tensors(w) if version == "v7" else {hf_name(k, version): v for k, v in w.items()}
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)).to(torch.bfloat16) for k, v in hf.items()},
              os.path.join(out, "hf", "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "hf", "config.json"), "w") as f:
        json.dump(hf_config(version, d), f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump({"tokenizer": "byte-level: token id = byte value (vocab 256), no BOS/EOS added", "text": TEXT,
                   "ids": ids}, f, indent=1)
        f.write("\n")

    # the reference runs on a float32 copy of the bf16 values, in a fresh process per version (RWKV_V7_ON
    # changes what `rwkv.model` defines at import time)
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "model.pth")
        torch.save({k: torch.from_numpy(v.copy()) for k, v in w.items()}, f32)
        res = os.path.join(tmp, "ref.npz")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--_reference", version, f32, res],
                       check=True, stdout=subprocess.DEVNULL)
        with np.load(res) as z:
            logits = z["logits"]
            state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
            rnn_vs_seq = float(z["rnn_vs_seq"])
    if rnn_vs_seq > 5e-5:
        raise SystemExit(f"{name}: the official package's RNN and sequence modes differ by {rnn_vs_seq}")
    np.save(os.path.join(out, "logits.npy"), logits)
    np.savez(os.path.join(out, "state.npz"), **state)

    # the layouts hold the same values
    from safetensors.torch import load_file
    back = load_file(os.path.join(out, "hf", "model.safetensors"))
    assert len(back) == len(hf) and all(np.array_equal(back[k].float().numpy(), hf[k]) for k in hf)
    return {"name": name, "arch": version[1:], "dims": dims_entry(version, d), "n_tokens": len(ids),
            "seed": seed, "stored_dtype": "bfloat16", "rnn_vs_seq_max_abs": rnn_vs_seq,
            "logit_abs_max": float(np.abs(logits).max()), "logit_std": float(logits.std()),
            "distinct_argmax": int(len(set(logits.argmax(1).tolist()))), "hf_tensors": len(hf),
            "pth_tensors": len(w)}


def dims_entry(version: str, d: dict) -> dict:
    C = d["C"]
    out = {"n_vocab": d["V"], "n_embd": C, "n_layer": d["L"], "n_ffn": d["F"],
           "dim_att": C if version == "v4" else d["H"] * d["N"],
           "n_head": None if version == "v4" else d["H"], "head_size": None if version == "v4" else d["N"]}
    out.update({k: v for k, v in d.items() if k.startswith("D")})
    return out


def _reference_main(version: str, f32_path: str, res: str) -> None:
    ids = list(TEXT.encode("utf-8"))
    logits, state, rnn_vs_seq = run_reference(version, f32_path, ids)
    np.savez(res, logits=logits, rnn_vs_seq=np.float64(rnn_vs_seq), **{f"state/{k}": v for k, v in state.items()})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_reference":
        _reference_main(*sys.argv[2:5])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("version", help="v4, v5.0, v5.1, v5.2, v6, v7, or all (all = the versions the shared "
                                   "fixtures lack: v5.0 v5.1 v6 v7)")
    p.add_argument("out", help="directory to write the fixture directory (and manifest.json) into")
    p.add_argument("--seed", type=int, default=20250101)
    args = p.parse_args()
    versions = ["v5.0", "v5.1", "v6", "v7"] if args.version == "all" else [args.version]
    import rwkv
    import torch
    manifest_path = os.path.join(args.out, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    from importlib.metadata import version as pkg_version
    manifest.update({"rwkv_package": pkg_version("rwkv"), "torch": torch.__version__.split("+")[0],
                     "strategy": "cpu fp32", "tool": "tools/make_reference.py"})
    manifest.setdefault("fixtures", {})
    for v in versions:
        name = VERSION_OF_NAME[v]
        entry = make_fixture(name, args.out, args.seed)
        manifest["fixtures"][name] = entry
        print(f"{name}: {v}, {entry['n_tokens']} tokens, |logit| <= {entry['logit_abs_max']:.2f}, "
              f"{entry['distinct_argmax']} distinct argmax, RNN vs sequence {entry['rnn_vs_seq_max_abs']:.2g}")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    del rwkv


if __name__ == "__main__":
    main()
