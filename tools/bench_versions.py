#!/usr/bin/env python3
"""Decode of several models against the first, interleaved run by run (issue 7's target: a version's roofline
ratio within 1.10x of the v5.2 model's at the same quant type; docs/PERFORMANCE.md, "Every version").

    python tools/bench_versions.py BASE.rwkv OTHER.rwkv [...] [--rounds 7] [--tokens 48] [--threads 2]

`rwkv-cpu bench run` measures each model in its own process with its own read-bandwidth figure, so the ratio of
two models' roofline ratios carries the noise of two bandwidth measurements taken minutes apart (+-5% on this
shared VM). Here the models are decoded in turn in one process, round after round, each loaded alone (an idle
model's pool threads would wait beside the measured one) and each round starting one model later than the last
(so that none always runs first or right after a bandwidth read): in each round every model runs --tokens
single-token `forward` calls (after --warmup), and the round's figure for a model is

    relative ratio = (ms/token / bytes per token) of the model / (the same) of the first model

which equals the ratio of their roofline ratios, as both saw the machine's bandwidth of that minute.

--fresh DIR copies each model into DIR (a tmpfs such as /dev/shm: no writeback) right before its turn and deletes
the copy after it, so every round reads each model from newly allocated pages. On this VM the host places a
guest's pages in memory of mixed speeds and a file's pages keep their place while it stays cached (one 1.5b file
and its identical copy decoded at 48 and 30 ms/token in the same minute), so without --fresh a comparison of two
files measures, besides their code, where their pages happened to land; with it, each round draws new places for
every model, and the median over rounds compares the code. Where memory
is of mixed speeds, each model's pages have their own bandwidth (this VM: two copies of one file decoded at 30
and 48 ms/token), so the tool also measures, right after each model's decode, the streaming read of its own
weights (rwkv_measure_weights_bandwidth) and reports the roofline ratio against that, and its ratio to the first
model's: the figure that compares the versions' code rather than where their pages landed. Bytes per token are
`rwkv-cpu bench run`'s (rwkv_cpu.bench.run.bytes_per_token)."""
import argparse
import gc
import os
import shutil
import statistics
import sys
import time

import numpy as np

import rwkv_cpu
from rwkv_cpu.bench.run import bytes_per_token, default_bandwidth_bytes, read_bandwidth, time_decode, weights_bandwidth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="the first one is the baseline (v5.2)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=48, help="single-token forward calls per model and round")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fresh", metavar="DIR", help="decode a new copy of each model in DIR every round (see above)")
    args = ap.parse_args()

    if not args.fresh:
        for path in args.models:                      # the files in the page cache, as `bench run` has them
            with open(path, "rb", buffering=0) as f:
                buf = bytearray(16 << 20)
                while f.readinto(buf):
                    pass
    rng = np.random.default_rng(0)
    nbytes = [0] * len(args.models)
    ms = [[] for _ in args.models]
    rel = [[] for _ in args.models]
    own = [[] for _ in args.models]      # roofline ratio against the model's own weights' bandwidth
    own_bw = [[] for _ in args.models]
    bw = []
    n = len(args.models)
    for rnd in range(args.rounds):
        per_byte = [0.0] * n
        for i in [(rnd + k) % n for k in range(n)]:   # each round starts one model later: no model always first
            path = args.models[i]
            if args.fresh:
                copy = os.path.join(args.fresh, f"bench_versions_{os.getpid()}_{i}.rwkv")
                shutil.copyfile(args.models[i], copy)
                path = copy
            # one model at a time: an idle model's pool threads would otherwise wait beside the measured one
            m = rwkv_cpu.Model(path, n_threads=args.threads)
            nbytes[i] = bytes_per_token(m)["total"]
            s = m.new_state()
            for tok in range(1, args.warmup + 1):
                m.forward(tok, s)
            t = time_decode(m, s, rng.integers(1, m.n_vocab, size=args.tokens).tolist())
            ms[i].append(t * 1e3)
            per_byte[i] = t / nbytes[i]
            own_bw[i].append(weights_bandwidth(m, 3))
            own[i].append(t / (nbytes[i] / own_bw[i][-1]))
            if i == 0:
                bw.append(read_bandwidth(m, default_bandwidth_bytes(), 1))
            del s, m
            gc.collect()
            if args.fresh:
                os.unlink(path)
        for i in range(len(args.models)):
            rel[i].append(per_byte[i] / per_byte[0])
    gbs = statistics.median(bw) / 1e9
    print(f"{args.rounds} rounds x {args.tokens} tokens, {args.threads} threads, read bandwidth {gbs:.1f} GB/s "
          f"(median; rounds {min(bw) / 1e9:.1f}-{max(bw) / 1e9:.1f}), load {os.getloadavg()[0]:.2f}"
          + (f", a fresh copy of each model every round (in {args.fresh})" if args.fresh else ""))
    base = own[0]
    for i, path in enumerate(args.models):
        t = statistics.median(ms[i])
        roof = t / 1e3 / (nbytes[i] / (gbs * 1e9))
        vs = [a / b for a, b in zip(own[i], base)]
        print(f"{os.path.basename(path):22s} {t:7.2f} ms/token {nbytes[i] / 1e6:6.1f} MB/token  roofline {roof:.3f} "
              f"(x first {statistics.median(rel[i]):.3f}, {min(rel[i]):.3f}-{max(rel[i]):.3f});  own weights "
              f"{statistics.median(own_bw[i]) / 1e9:4.1f} GB/s, roofline {statistics.median(own[i]):.3f} "
              f"(x first {statistics.median(vs):.3f}, {min(vs):.3f}-{max(vs):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
