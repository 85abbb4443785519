#!/usr/bin/env python3
"""Batched decode B = 1 against B = N, interleaved run by run (docs/PERFORMANCE.md, "Prompt processing and batched decode").

    python tools/bench_batch.py MODEL.rwkv 1,8,16 RUNS STEPS       (TH=threads, default 2)

Each run feeds STEPS forward_batch calls of every B in turn (fresh random tokens), so all see the same load; prints the
median total tokens/s per B over the runs, tokens per CPU-second of this process, the ratio of medians to the first
B, and the median of the per-run ratios. After each run, the machine's streaming read bandwidth (the C library's
read of a 1 GB buffer on the model's pool): B = 1 decode runs at that bandwidth and larger batches mostly do not, so
on a host whose memory is shared with other tenants the ratio rises as the bandwidth falls; quote both."""
import sys, time, statistics, os
import numpy as np
import rwkv_cpu
from rwkv_cpu.bench.run import read_bandwidth
path = sys.argv[1]; Bs = [int(b) for b in sys.argv[2].split(',')]; runs = int(sys.argv[3]); steps = int(sys.argv[4])
th = int(os.environ.get("TH", "2"))
m = rwkv_cpu.Model(path, n_threads=th)
rng = np.random.default_rng(0)
states = {B: [m.new_state() for _ in range(B)] for B in Bs}
for B in Bs: m.forward_batch(rng.integers(1, m.n_vocab, size=B).tolist(), states[B])
res = {B: [] for B in Bs}; cpu = {B: [] for B in Bs}; bw = []
for r in range(runs):
    for B in Bs:
        toks = [rng.integers(1, m.n_vocab, size=B).tolist() for _ in range(steps)]
        t0 = time.perf_counter(); c0 = time.process_time()
        for s in toks: m.forward_batch(s, states[B])
        res[B].append(B * steps / (time.perf_counter() - t0)); cpu[B].append(B*steps/(time.process_time()-c0))
    bw.append(read_bandwidth(m, 1 << 30, 2) / 1e9)
for B in Bs:
    ratios = [a / b for a, b in zip(res[B], res[Bs[0]])]
    print(f"B={B}: {statistics.median(res[B]):.2f} tok/s (runs {', '.join('%.2f'%x for x in res[B])}), per CPU-s {statistics.median(cpu[B]):.2f}; x B{Bs[0]} {statistics.median(res[B])/statistics.median(res[Bs[0]]):.2f}, per-run ratios {', '.join('%.2f'%x for x in ratios)} (median {statistics.median(ratios):.2f})")
print("read bandwidth GB/s per run:", ", ".join("%.1f" % x for x in bw))
print("load", os.getloadavg())
