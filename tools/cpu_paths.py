"""Every kernel path gives the same logits: run the reference fixtures on CPUs without AVX-512 or without AVX
(qemu-user CPU models) and compare with the native run and the official logits. Used by .ci/run.

    python tools/cpu_paths.py prepare DIR
        natively: converts the fixtures of every architecture (tests/data) to DIR in f32, f16, q8 and q4 (13
        pairs, MODELS), and saves each model's logits on the fixture's tokens (sequence mode, then 4 tokens one at a time) from
        this machine's kernels.
    qemu-x86_64 -cpu Haswell $(command -v python3) tools/cpu_paths.py check DIR --kernel avx2
        under emulation: the library must choose the kernel family --kernel (the best one the emulated CPU
        has); each model's logits must match the native ones within the tolerance of its weight type, and the
        f32 models' the official implementation's within 1e-4 (as tests/test_versions.py).

Exit status 0 when every check passes; each model gets one line with its largest differences.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
# every architecture, every weight type at least twice (13 models: emulation is slow)
MODELS = [("tiny-4v0-660K", "f32"), ("tiny-4v0-660K", "q4"), ("random-5v0", "f32"), ("random-5v0", "q8"),
          ("random-5v1", "f16"), ("random-5v1", "q4"), ("tiny-5v2-730K", "f32"), ("tiny-5v2-730K", "q8"),
          ("tiny-5v2-730K", "q4"), ("random-6v0", "f16"), ("random-6v0", "q4"), ("random-7v0", "f32"),
          ("random-7v0", "q8")]
# What two kernel families may differ by on the same file. f32/f16 weights are computed in f32: only the order
# of float additions differs, so |logit difference| <= 1e-4. q8/q4 products quantize the activations (int16 /
# int8 steps, kernels/quant.c): a last-bit difference in a float input can move one activation by one step,
# and layer after layer such steps add up. With int16 steps (q8) that stays below 2e-3 in a logit; with int8
# steps (q4) it reaches ~0.15 in a logit on these fixtures, so q4 is held to the bound tests/test_quant_quality.py
# sets between families: mean KL divergence of the next-token distributions below 1e-3.
TOL_NATIVE = {"f32": 1e-4, "f16": 1e-4, "q8": 2e-3}
TOL_KL_Q4 = 1e-3
TOL_OFFICIAL = 1e-4
N_SINGLE = 4


def _tokens(fixture):
    with open(os.path.join(DATA, fixture, "tokens.json"), encoding="utf-8") as f:
        return json.load(f)["ids"]


def _logits(model, ids):
    """[T + N_SINGLE, V]: sequence mode over ids, then N_SINGLE more tokens one call each."""
    seq, state = model.forward(ids, all_logits=True)
    singles = []
    for t in ids[:N_SINGLE]:
        lg, state = model.forward([t], state)
        singles.append(lg)
    return np.concatenate([seq, np.stack(singles)])


def _mean_kl(p_logits, q_logits):
    """Mean over positions of KL(softmax(p) || softmax(q)), in nats."""
    def log_softmax(x):
        x = x.astype(np.float64) - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())


def prepare(d):
    import rwkv_cpu
    from rwkv_cpu.convert import convert
    os.makedirs(d, exist_ok=True)
    for fx, q in MODELS:
        out = os.path.join(d, f"{fx}-{q}.rwkv")
        convert(os.path.join(DATA, fx, "model.pth"), out, quant=q, tokenizer="bytes", progress=False)
        np.save(out + ".logits.npy", _logits(rwkv_cpu.Model(out, n_threads=1), _tokens(fx)))
    print(f"prepared {len(MODELS)} models in {d}")


def check(d, kernel):
    import rwkv_cpu
    from rwkv_cpu._ffi import ffi, lib
    got_kernel = ffi.string(lib.rwkv_kernel_name()).decode()
    features = ffi.string(lib.rwkv_cpu_features()).decode()
    print(f"cpu features: {features or '(none)'}; kernel family: {got_kernel}")
    ok = got_kernel == kernel
    if not ok:
        print(f"FAIL: expected the {kernel} kernel family on this CPU")
    for fx, q in MODELS:
        path = os.path.join(d, f"{fx}-{q}.rwkv")
        got = _logits(rwkv_cpu.Model(path, n_threads=2), _tokens(fx))
        native = np.load(path + ".logits.npy")
        d_native = float(np.abs(got - native).max())
        line = f"{fx:14s} {q:3s}  max |logit - native| {d_native:.2e}"
        if q == "q4":
            kl = _mean_kl(native, got)
            line += f", mean KL {kl:.1e} (tol {TOL_KL_Q4:.0e})"
            good = kl <= TOL_KL_Q4
        else:
            line += f" (tol {TOL_NATIVE[q]:.0e})"
            good = d_native <= TOL_NATIVE[q]
        good = good and bool(np.isfinite(got).all())
        if q == "f32":
            ref = np.load(os.path.join(DATA, fx, "logits.npy"))
            d_ref = float(np.abs(got[:len(ref)] - ref).max())
            line += f"  |logit - official| {d_ref:.2e} (tol {TOL_OFFICIAL:.0e})"
            good = good and d_ref <= TOL_OFFICIAL
        print(("ok    " if good else "FAIL  ") + line)
        ok = ok and good
    return 0 if ok else 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare").add_argument("dir")
    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("--kernel", required=True, help="the kernel family the library must choose")
    a = p.parse_args(argv)
    if a.cmd == "prepare":
        prepare(a.dir)
        return 0
    return check(a.dir, a.kernel)


if __name__ == "__main__":
    sys.exit(main())
