#!/usr/bin/env python3
"""Prompt processing and batched decode speed of one .rwkv model (docs/PERFORMANCE.md, "Prompt processing
and batched decode").

    python tools/bench_prefill.py MODEL.rwkv [--threads 2] [--prompts 64 512 2048] [--batches 1 4 8 16]

For each prompt length: the median over --runs of the time to read a prompt of random tokens from a fresh
state (logits for the last position only), as tokens/s and as GOP/s of its matrix products (2 x the weights
of the layer matrices per token; the output head once per prompt). Token by token: --decode tokens fed one
per call (the decode path), median tokens/s, and the prefill speed-up over it measured in the same run. Batched
decode: B sequences advanced one token per call, total tokens/s (median over --steps calls), and the ratio to
B = 1. Runs are interleaved (prompt lengths and batch sizes take turns) so that a noisy neighbour slows all
alike; the ratios are the figures to compare across machines.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import rwkv_cpu


def matrix_weights(model) -> tuple:
    """(weights of the layer matrices, weights of the head): what one token multiplies."""
    layer = head = 0
    for t in model.tensors():
        if len(t.shape) == 2 and t.name.startswith("blocks."):
            layer += t.shape[0] * t.shape[1]
        elif t.name == "head.weight":
            head = t.shape[0] * t.shape[1]
    return layer, head


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, nargs="*", default=[64, 512, 2048])
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 4, 8, 16])
    ap.add_argument("--runs", type=int, default=3, help="repeats of each prompt length (median)")
    ap.add_argument("--decode", type=int, default=16, help="tokens fed one by one for the decode speed")
    ap.add_argument("--steps", type=int, default=5, help="batched decode calls per batch size (median)")
    args = ap.parse_args(argv)

    model = rwkv_cpu.Model(args.model, n_threads=args.threads)
    layer_w, head_w = matrix_weights(model)
    rng = np.random.default_rng(0)
    vocab = model.n_vocab
    print(f"{args.model}: {model.arch}, {args.threads} threads, kernels {rwkv_cpu._ffi.ffi.string(rwkv_cpu._ffi.lib.rwkv_kernel_name()).decode()}, "
          f"chunk {rwkv_cpu._ffi.lib.rwkv_eval_chunk()}, {layer_w / 1e9:.2f} G layer weights")
    sys.stdout.flush()

    model.forward(rng.integers(0, vocab, size=8))  # warm-up: map the weights, size the buffers
    prefill = {n: [] for n in args.prompts}
    decode = []
    for _ in range(args.runs):
        for n in args.prompts:
            ids = rng.integers(0, vocab, size=n)
            t0 = time.perf_counter()
            model.forward(ids)
            prefill[n].append(time.perf_counter() - t0)
        state = model.new_state()
        ids = rng.integers(0, vocab, size=args.decode)
        t0 = time.perf_counter()
        for t in ids:
            model.forward([int(t)], state)
        decode.append(args.decode / (time.perf_counter() - t0))

    dec = statistics.median(decode)
    print(f"token by token: {dec:.2f} tok/s (median of {args.runs} runs of {args.decode} tokens; "
          f"runs {', '.join(f'{d:.2f}' for d in decode)})")
    print("| prompt | tok/s | GOP/s | x token by token | runs (s) |")
    print("|---:|---:|---:|---:|---|")
    for n in args.prompts:
        s = statistics.median(prefill[n])
        gop = (2 * layer_w * n + 2 * head_w) / s / 1e9
        print(f"| {n} | {n / s:.1f} | {gop:.0f} | {n / s / dec:.1f} | {', '.join(f'{x:.2f}' for x in prefill[n])} |")
    sys.stdout.flush()

    batch = {b: [] for b in args.batches}
    states = {b: [model.forward(rng.integers(0, vocab, size=3))[1] for _ in range(b)] for b in args.batches}
    for _ in range(args.steps):
        for b in args.batches:
            toks = rng.integers(0, vocab, size=b)
            t0 = time.perf_counter()
            model.forward_batch(toks, states[b])
            batch[b].append(b / (time.perf_counter() - t0))
    print("| B | total tok/s | x B = 1 | steps (tok/s) |")
    print("|---:|---:|---:|---|")
    base = statistics.median(batch[args.batches[0]]) if args.batches else 1
    for b in args.batches:
        m = statistics.median(batch[b])
        print(f"| {b} | {m:.2f} | {m / base:.1f} | {', '.join(f'{x:.1f}' for x in batch[b])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
