#!/usr/bin/env python3
"""Decode speed of every RWKV version at the same shape, and its roofline ratio relative to v5.2.

    python tools/bench_arch.py                                   # 1.5B-shaped: 24 layers, width 2048, f16
    python tools/bench_arch.py --layers 4 --versions v5.2 v7     # quicker

For each version it writes a random-weight checkpoint of that shape (numpy only, a BlinkDL-named
.safetensors written tensor by tensor; each version with its own FFN size and LoRA ranks, as the reference
training code sizes them), converts it, and times single-token decode. The roofline ratio is
ms/token / (bytes read per token / bandwidth); divided by v5.2's, the bandwidth cancels, so the table's
`vs v5.2` column is (ms/token / bytes per token) over the same for v5.2, measured in the same run. The
issue's target (issue 7) is <= 1.10: the LoRA and WKV work must not show next to weight streaming.

Timings are medians over --runs repeats of --tokens decode steps each (after one warm-up), versions
interleaved run by run so that a noisy neighbour hits all of them alike. On a shared machine, --cpu-time
(with --threads 1) times the process's CPU time instead of the wall clock: other processes then cost
cache and memory bandwidth, not whole time slices.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import make_weights  # noqa: E402  (numpy-only weight maker; torch is not needed here)
from rwkv_cpu.bench.weights import shape_of  # noqa: E402  (each version's FFN size and LoRA ranks)


def write_checkpoint(path: str, version: str, d: dict, seed: int) -> None:
    """A BlinkDL-named f16 .safetensors, generated and written one layer at a time."""
    layers = []
    for i in range(d["L"]):
        w = make_weights(version, dict(d, L=1, V=1), seed + i)
        layers.append({k.replace("blocks.0.", f"blocks.{i}.", 1): v for k, v in w.items()
                       if k.startswith("blocks.0.") and (i == 0 or ".ln0." not in k)})
        if i == 0:
            top = {k: v for k, v in w.items() if not k.startswith("blocks.")}
    rng = np.random.default_rng(seed)
    top["emb.weight"] = (0.3 * rng.standard_normal((d["V"], d["C"]), dtype=np.float32))
    top["head.weight"] = (2 / np.sqrt(d["C"]) * rng.standard_normal((d["V"], d["C"]), dtype=np.float32))
    groups = [top] + layers
    header, off = {}, 0
    for g in groups:
        for k, v in g.items():
            n = v.size * 2
            header[k] = {"dtype": "F16", "shape": list(v.shape), "data_offsets": [off, off + n]}
            off += n
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for g in groups:
            for v in g.values():
                f.write(v.astype("<f2").tobytes())


def bytes_per_token(model) -> int:
    """Bytes of weights one decode step reads: every tensor, but only one row of the embedding."""
    total = 0
    for t in model.tensors():
        total += t.nbytes if t.name != "emb.weight" else t.nbytes // t.shape[0]
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--versions", nargs="+", default=["v5.2", "v4", "v6", "v7"])
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--embd", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=65536)
    p.add_argument("--dtype", default="f16", choices=["f16", "f32"])
    p.add_argument("--tokens", type=int, default=16, help="decode steps per run")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="0: physical cores")
    p.add_argument("--workdir", default=None, help="where to keep the models (default: a temporary directory)")
    p.add_argument("--cpu-time", action="store_true", help="time process CPU time, not wall time (use --threads 1)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    import rwkv_cpu
    from rwkv_cpu.convert import convert

    work = args.workdir or tempfile.mkdtemp(prefix="bench_arch_")
    os.makedirs(work, exist_ok=True)
    models = {}
    for v in args.versions:
        d = shape_of(v, args.embd, args.layers, args.vocab)
        out = os.path.join(work, f"{v}-L{args.layers}-C{args.embd}-{args.dtype}.rwkv")
        if not os.path.exists(out):
            src = os.path.join(work, f"{v}.safetensors")
            t0 = time.time()
            write_checkpoint(src, v, d, 1)
            convert(src, out, dtype=args.dtype, tokenizer="none", progress=False)
            os.unlink(src)
            print(f"# made {out} in {time.time() - t0:.0f} s", file=sys.stderr)
        models[v] = rwkv_cpu.Model(out, n_threads=args.threads)

    times = {v: [] for v in models}
    states = {}
    for v, m in models.items():  # warm-up: page the weights in, size the scratch
        _, states[v] = m.forward([1, 2, 3])
    rng = np.random.default_rng(0)
    for _ in range(args.runs):
        for v, m in models.items():
            toks = rng.integers(0, min(256, args.vocab), size=args.tokens).tolist()
            st = states[v]
            clock = time.process_time if args.cpu_time else time.perf_counter
            t0 = clock()
            for tok in toks:
                m.forward(tok, st)
            times[v].append((clock() - t0) / args.tokens * 1e3)

    rows = []
    for v, m in models.items():
        med = statistics.median(times[v])
        b = bytes_per_token(m)
        rows.append(dict(version=v, params=m.n_params, bytes_per_token=b, ms_median=med, ms_min=min(times[v]),
                         ms_max=max(times[v]), tok_s=1e3 / med, threads=m.n_threads))
    base = next((r["ms_median"] / r["bytes_per_token"] for r in rows if r["version"] == "v5.2"), None)
    print(f"{'version':8} {'params':>8} {'MB/token':>9} {'ms/token':>9} {'(min..max)':>16} {'tok/s':>7} {'vs v5.2':>8}")
    for r in rows:
        rel = r["ms_median"] / r["bytes_per_token"] / base if base else float("nan")
        r["roofline_vs_v5_2"] = rel
        print(f"{r['version']:8} {r['params'] / 1e9:7.2f}B {r['bytes_per_token'] / 1e6:9.1f} {r['ms_median']:9.1f} "
              f"{r['ms_min']:7.1f}..{r['ms_max']:<7.1f} {r['tok_s']:7.2f} {rel:8.3f}")
    print(f"# {args.layers} layers, width {args.embd}, vocab {args.vocab}, {args.dtype}, {rows[0]['threads']} threads, "
          f"kernels {rwkv_cpu._ffi.ffi.string(rwkv_cpu._ffi.lib.rwkv_kernel_name()).decode()}, "
          f"median of {args.runs} runs x {args.tokens} tokens, {'CPU' if args.cpu_time else 'wall'} time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
