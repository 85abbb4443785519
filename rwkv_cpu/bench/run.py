"""`rwkv-cpu bench run`: how fast a model runs, and how close decode comes to the memory roofline.

    rwkv-cpu bench run eagle-7b-q4.rwkv 1.5b-f16.rwkv --threads 2 --markdown

For each model, in a fresh process (so that load time and peak RSS are the model's own), with the file read
into the page cache first:

* load: `Model(path)`, then the first token (`forward` of one token from an empty state): "load to first token";
* decode: --warmup tokens, then --runs runs of --tokens single-token `forward` calls on one state; ms/token of a
  run = its time / --tokens; the figure is the median over runs;
* read bandwidth, in the same process and between the decode runs (so both see the same load): the C library's
  `rwkv_measure_read_bandwidth`, a streaming read of a buffer larger than the caches with the model's own
  thread pool and thread count; the figure is the median over runs;
* roofline ratio = ms/token / (bytes read per token / bandwidth); bytes read per token = every tensor (all
  layer matrices, the head, the small vectors) except the embedding, of which one row, plus the state (read
  once); 1.00 is a decode step that runs at the speed of streaming its weights;
* weights' bandwidth and roofline ratio against it: `rwkv_measure_weights_bandwidth`, the same streaming read
  over the model's own mapped weights, right after each decode run. Where memory is of mixed speeds (this
  project's VM: two copies of one file in the page cache decoded at 30 and 48 ms/token) it shows what the
  model's own pages read at; a diagnostic (it moves between runs more than decode does), not the headline ratio;
* peak RSS (VmHWM) after the first decode run, before any bandwidth buffer exists;
* prefill tokens/s: `forward` of an N-token prompt from an empty state, for each --prefill N;
* batched decode tokens/s: `forward_batch` of B sequences one token each, for each --batch B.

Prefill and batch figures are medians over up to --runs repeats within --budget seconds per figure (at least
one run). Timings on a shared machine are noisy: compare ratios taken in one run, and quote medians.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import List, Optional

import numpy as np

DEFAULT_PREFILL = (64, 512, 2048)
DEFAULT_BATCH = (1, 4, 8, 16)


# ---- measurements inside the worker process ---------------------------------------------------------------
def peak_rss_bytes() -> int:
    """VmHWM of this process (Linux), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def bytes_per_token(model) -> dict:
    """What one decode step reads (module docstring), by part."""
    parts = {"matrices": 0, "head": 0, "embedding_row": 0, "vectors": 0}   # vectors: every small tensor
    for t in model.tensors():
        if t.name == "emb.weight":
            parts["embedding_row"] += t.nbytes // t.shape[0]
        elif t.name == "head.weight":
            parts["head"] += t.nbytes
        elif len(t.shape) == 2 and min(t.shape) > 1 and t.name.endswith(".weight"):
            parts["matrices"] += t.nbytes      # the projections; LoRA and decay tables count as small tensors
        else:
            parts["vectors"] += t.nbytes
    parts["state"] = model.state_size * 4
    parts["total"] = sum(parts.values())
    return parts


def last_level_cache_bytes() -> int:
    """The largest CPU cache Linux reports for cpu0 (sysfs), 0 when unknown."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = os.listdir(base)
    except OSError:
        return 0
    for e in entries:
        try:
            with open(os.path.join(base, e, "size")) as f:
                text = f.read().strip()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in "KMG" else text
        if digits.isdigit():
            best = max(best, int(digits) * mult)
    return best


def default_bandwidth_bytes() -> int:
    """A buffer 4x the last-level cache, between 256 MiB and 2 GiB."""
    return int(min(max(4 * last_level_cache_bytes(), 256 << 20), 2 << 30))


def weights_bandwidth(model, reps: int = 3) -> float:
    """Bytes per second of the C library's streaming read over the model's own weights, with its pool."""
    from .._ffi import check, ffi, lib
    out = ffi.new("double *")
    check(lib.rwkv_measure_weights_bandwidth(model._handle, int(reps), out, ffi.NULL), "measuring read bandwidth")
    return float(out[0])


def read_bandwidth(model, nbytes: int, reps: int = 3) -> float:
    """Bytes per second of the C library's streaming read with the model's pool."""
    from .._ffi import check, ffi, lib
    out = ffi.new("double *")
    check(lib.rwkv_measure_read_bandwidth(model._handle, int(nbytes), int(reps), out), "measuring read bandwidth")
    return float(out[0])


def _tokens(rng, n: int, vocab: int) -> List[int]:
    return rng.integers(1, vocab, size=n).tolist()


def time_decode(model, state, toks: List[int]) -> float:
    """Seconds per token of single-token forward calls."""
    t0 = time.perf_counter()
    for tok in toks:
        model.forward(tok, state)
    return (time.perf_counter() - t0) / len(toks)


def _repeat(fn, runs: int, budget: float) -> List[float]:
    """fn() -> seconds, up to `runs` times while the total stays within `budget` (at least once)."""
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < runs:
        times.append(fn())
        if time.perf_counter() - start + times[-1] > budget:
            break
    return times


def time_prefill(model, n: int, rng, runs: int, budget: float) -> dict:
    toks = _tokens(rng, n, model.n_vocab)

    def once():
        t0 = time.perf_counter()
        model.forward(toks)
        return time.perf_counter() - t0
    times = _repeat(once, runs, budget)
    return {"tokens": n, "runs": len(times), "seconds": statistics.median(times),
            "tok_s": n / statistics.median(times)}


def time_batch(model, B: int, steps: int, rng, runs: int, budget: float) -> dict:
    states = [model.new_state() for _ in range(B)]
    model.forward_batch(_tokens(rng, B, model.n_vocab), states)     # warm-up (sizes the scratch)

    def once():
        toks = [_tokens(rng, B, model.n_vocab) for _ in range(steps)]
        t0 = time.perf_counter()
        for step in toks:
            model.forward_batch(step, states)
        return time.perf_counter() - t0
    times = _repeat(once, runs, budget)
    return {"batch": B, "steps": steps, "runs": len(times), "seconds": statistics.median(times),
            "tok_s": B * steps / statistics.median(times)}


def measure(path: str, threads: int, tokens: int, runs: int, warmup: int, prefill, batch, batch_steps: int,
            bw_bytes: int, budget: float, seed: int = 0) -> dict:
    """Every figure of one model (module docstring); runs in the worker process."""
    from .._ffi import ffi, lib
    from ..model import Model
    rng = np.random.default_rng(seed)
    first = _tokens(rng, 1, 256)
    t0 = time.perf_counter()
    model = Model(path, n_threads=threads)
    t_load = time.perf_counter() - t0
    _, state = model.forward(first)
    t_first = time.perf_counter() - t0
    rss_loaded = peak_rss_bytes()
    time_decode(model, state, _tokens(rng, warmup, model.n_vocab))
    decode, bandwidth, own = [], [], []
    rss = None
    for r in range(runs):
        decode.append(time_decode(model, state, _tokens(rng, tokens, model.n_vocab)))
        own.append(weights_bandwidth(model))
        if rss is None:
            rss = peak_rss_bytes()          # before the first bandwidth buffer
        bandwidth.append(read_bandwidth(model, bw_bytes))
    bpt = bytes_per_token(model)
    ms = statistics.median(decode) * 1e3
    bw = statistics.median(bandwidth)
    roof_ms = bpt["total"] / bw * 1e3
    own_ratios = [t / (bpt["total"] / b) for t, b in zip(decode, own)]
    out = {
        "model": os.path.basename(path), "path": os.path.abspath(path), "arch": model.arch,
        "n_layer": model.n_layer, "n_embd": model.n_embd, "n_ffn": model.n_ffn, "n_vocab": model.n_vocab,
        "n_params": model.n_params, "dtypes": _dtype_summary(model), "file_bytes": model.file_size,
        "threads": model.n_threads, "kernels": ffi.string(lib.rwkv_kernel_name()).decode(),
        "load_s": t_load, "first_token_s": t_first, "peak_rss_bytes": rss, "rss_after_load_bytes": rss_loaded,
        "decode_tokens_per_run": tokens, "decode_runs": runs, "decode_ms": ms,
        "decode_ms_runs": [t * 1e3 for t in decode], "decode_tok_s": 1e3 / ms,
        "bandwidth_gb_s": bw / 1e9, "bandwidth_gb_s_runs": [b / 1e9 for b in bandwidth],
        "bandwidth_buffer_bytes": bw_bytes, "bytes_per_token": bpt, "roofline_ms": roof_ms,
        "roofline_ratio": ms / roof_ms,
        # each decode run against the bandwidth read right after it (robust to slow changes of machine load)
        "roofline_ratio_runs": [t / (bpt["total"] / b) for t, b in zip(decode, bandwidth)],
        "weights_bandwidth_gb_s": statistics.median(own) / 1e9, "weights_bandwidth_gb_s_runs": [b / 1e9 for b in own],
        "roofline_ratio_weights": statistics.median(own_ratios), "roofline_ratio_weights_runs": own_ratios,
        "prefill": [time_prefill(model, n, rng, runs, budget) for n in prefill],
        "batch": [time_batch(model, B, batch_steps, rng, runs, budget) for B in batch],
    }
    return out


def _dtype_summary(model) -> str:
    """The type of the large matrices, e.g. "q4" or "f16" (several: "q4+f16")."""
    seen = []
    for t in model.tensors():
        if len(t.shape) == 2 and min(t.shape) > 1 and t.nbytes >= 1 << 16 and t.dtype not in seen:
            seen.append(t.dtype)
    return "+".join(seen) or "f32"


# ---- the parent: one worker per model -------------------------------------------------------------------------
def precache(path: str) -> None:
    """Read the file once so that it sits in the page cache (the "file in the page cache" condition)."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(16 << 20)
        while f.readinto(buf):
            pass


def run_one(path: str, args) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file")
    if not args.no_precache:
        precache(path)
    spec = {"path": os.path.abspath(path), "threads": args.threads, "tokens": args.tokens, "runs": args.runs,
            "warmup": args.warmup, "prefill": args.prefill, "batch": args.batch, "batch_steps": args.batch_steps,
            "bw_bytes": args.bw_bytes or default_bandwidth_bytes(), "budget": args.budget}
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")   # no idle BLAS threads beside ours
    # run from the directory holding the package this process imported, so that `-m` finds the same one (from
    # a source checkout's root, ./rwkv_cpu would otherwise shadow the installed package and its library)
    home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # .../site-packages
    proc = subprocess.run([sys.executable, "-m", "rwkv_cpu.bench.run", json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=home)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarking {path} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)


def machine() -> dict:
    from .._ffi import ffi, lib
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model or platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "features": ffi.string(lib.rwkv_cpu_features()).decode(), "load_avg": _loadavg()}


def _loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# ---- output -----------------------------------------------------------------------------------------------------
def _mb(b) -> str:
    return f"{b / 1e6:.0f}" if b is not None else "?"


def format_text(results: List[dict], m: dict) -> str:
    lines = [f"# {m['cpu']}, {m['cpus']} CPUs ({m['features']}), load average {m['load_avg']}"]
    for r in results:
        b = r["bytes_per_token"]
        lines += [
            f"{r['model']}: RWKV {r['arch']}, {r['n_layer']} layers x {r['n_embd']}, ffn {r['n_ffn']}, vocab "
            f"{r['n_vocab']}, {r['n_params'] / 1e9:.3f} B params, {r['dtypes']}, {_mb(r['file_bytes'])} MB, "
            f"{r['threads']} threads, kernels {r['kernels']}",
            f"  load           {r['load_s'] * 1e3:.0f} ms; to first token {r['first_token_s'] * 1e3:.0f} ms",
            f"  peak RSS       {_mb(r['peak_rss_bytes'])} MB (file {_mb(r['file_bytes'])} MB, "
            f"+{_mb(r['peak_rss_bytes'] - r['file_bytes'])} MB)",
            f"  decode         {r['decode_ms']:.2f} ms/token ({r['decode_tok_s']:.1f} tok/s), median of "
            f"{r['decode_runs']} runs x {r['decode_tokens_per_run']} tokens "
            f"[{', '.join(f'{x:.2f}' for x in r['decode_ms_runs'])}]",
            f"  read bandwidth {r['bandwidth_gb_s']:.1f} GB/s [{', '.join(f'{x:.1f}' for x in r['bandwidth_gb_s_runs'])}]"
            f" ({r['bandwidth_buffer_bytes'] >> 20} MiB buffer)",
            f"  bytes/token    {b['total'] / 1e6:.1f} MB (matrices {b['matrices'] / 1e6:.1f}, head {b['head'] / 1e6:.1f}, "
            f"vectors {b['vectors'] / 1e6:.2f}, state {b['state'] / 1e6:.2f}, embedding row {b['embedding_row']} B)",
            f"  roofline       {r['roofline_ms']:.2f} ms/token; ratio {r['roofline_ratio']:.3f} (run by run: "
            f"{', '.join(f'{x:.2f}' for x in r['roofline_ratio_runs'])})",
            f"  weights' own   {r['weights_bandwidth_gb_s']:.1f} GB/s [{', '.join(f'{x:.1f}' for x in r['weights_bandwidth_gb_s_runs'])}]"
            f"; ratio against it {r['roofline_ratio_weights']:.3f} (run by run: "
            f"{', '.join(f'{x:.2f}' for x in r['roofline_ratio_weights_runs'])})",
        ]
        for p in r["prefill"]:
            lines.append(f"  prefill {p['tokens']:>5}  {p['tok_s']:.1f} tok/s ({p['seconds']:.2f} s, {p['runs']} runs)")
        for p in r["batch"]:
            lines.append(f"  batch B={p['batch']:<3}  {p['tok_s']:.1f} tok/s ({p['steps']} steps, {p['runs']} runs)")
    return "\n".join(lines)


def format_markdown(results: List[dict], m: dict) -> str:
    lines = ["| model | arch | params | type | threads | load to 1st token | peak RSS (file) | ms/token | "
             "GB/s read | MB/token | roofline ratio | weights' GB/s | ratio vs weights' |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['arch']} | {r['n_params'] / 1e9:.2f} B | {r['dtypes']} | {r['threads']} | "
                     f"{r['first_token_s'] * 1e3:.0f} ms | {_mb(r['peak_rss_bytes'])} MB ({_mb(r['file_bytes'])}) | "
                     f"{r['decode_ms']:.2f} | {r['bandwidth_gb_s']:.1f} | {r['bytes_per_token']['total'] / 1e6:.1f} | "
                     f"**{r['roofline_ratio']:.3f}** | {r['weights_bandwidth_gb_s']:.1f} | "
                     f"{r['roofline_ratio_weights']:.3f} |")
    pre = sorted({p["tokens"] for r in results for p in r["prefill"]})
    bat = sorted({p["batch"] for r in results for p in r["batch"]})
    if pre or bat:
        lines += ["", "| model | " + " | ".join([f"prefill {n} tok/s" for n in pre] + [f"batch {b} tok/s" for b in bat])
                  + " |", "|---|" + "---:|" * (len(pre) + len(bat))]
        for r in results:
            pv = {p["tokens"]: f"{p['tok_s']:.1f}" for p in r["prefill"]}
            bv = {p["batch"]: f"{p['tok_s']:.1f}" for p in r["batch"]}
            lines.append(f"| {r['model']} | " + " | ".join([pv.get(n, "") for n in pre] + [bv.get(b, "") for b in bat])
                         + " |")
    lines.append("")
    lines.append(f"({m['cpu']}, {m['cpus']} CPUs, kernels {results[0]['kernels'] if results else '?'}, load average "
                 f"{m['load_avg']} at the end; decode: median of {results[0]['decode_runs'] if results else '?'} runs x "
                 f"{results[0]['decode_tokens_per_run'] if results else '?'} tokens)")
    return "\n".join(lines)


# ---- command line -------------------------------------------------------------------------------------------------
def _int_list(text: str) -> List[int]:
    text = text.strip()
    if text in ("", "none", "0"):
        return []
    vals = [int(x) for x in text.replace(",", " ").split()]
    if any(v < 1 for v in vals):
        raise ValueError(f"expected positive integers, got {text!r}")
    return vals


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="time models: load, decode roofline ratio, peak RSS, prefill, batched decode",
                       description=__doc__.split("\n\n")[0] + " See `rwkv_cpu/bench/run.py` for the definitions.")
    p.add_argument("models", nargs="+", help=".rwkv files")
    p.add_argument("--threads", type=int, default=0, help="threads (default: physical cores)")
    p.add_argument("--tokens", type=int, default=32, help="decode tokens per run (default 32)")
    p.add_argument("--runs", type=int, default=5, help="decode runs, and the most prefill/batch repeats (default 5)")
    p.add_argument("--warmup", type=int, default=4, help="decode tokens before timing (default 4)")
    p.add_argument("--prefill", type=_int_list, default=list(DEFAULT_PREFILL), metavar="'N N ...'",
                   help="prompt lengths to time (default '64 512 2048'; 'none' for none)")
    p.add_argument("--batch", type=_int_list, default=list(DEFAULT_BATCH), metavar="'B B ...'",
                   help="batch sizes to time (default '1 4 8 16'; 'none' for none)")
    p.add_argument("--batch-steps", type=int, default=8, help="decode steps per batch run (default 8)")
    p.add_argument("--budget", type=float, default=30.0,
                   help="seconds for the repeats of one prefill/batch figure (default 30; at least one run)")
    p.add_argument("--bw-bytes", type=int, default=0, help="read-bandwidth buffer (default 4x L3, 256 MiB..2 GiB)")
    p.add_argument("--no-precache", action="store_true", help="do not read the file into the page cache first")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="tables to paste into docs/PERFORMANCE.md")
    fmt.add_argument("--json", action="store_true", help="a JSON object")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from ..errors import RwkvArgumentError
    if args.tokens < 1 or args.runs < 1 or args.warmup < 0 or args.batch_steps < 1:
        raise RwkvArgumentError("--tokens, --runs and --batch-steps must be >= 1, --warmup >= 0")
    results = []
    for path in args.models:
        r = run_one(path, args)
        results.append(r)
        if not (args.json or args.markdown):
            print(format_text([r], machine()).split("\n", 1)[1] if results[1:] else format_text([r], machine()),
                  flush=True)
    m = machine()
    if args.json:
        print(json.dumps({"machine": m, "results": results}, indent=1))
    elif args.markdown:
        print(format_markdown(results, m))
    return 0


def _worker(spec_json: str) -> int:
    s = json.loads(spec_json)
    r = measure(s["path"], s["threads"], s["tokens"], s["runs"], s["warmup"], s["prefill"], s["batch"],
                s["batch_steps"], s["bw_bytes"], s["budget"])
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
