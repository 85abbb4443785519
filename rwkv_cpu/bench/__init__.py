"""Benchmarks: `rwkv-cpu bench make|run|quality`.

    rwkv-cpu bench make PRESET OUT [--version v5.2] [--seed 0] [--outliers K]   random checkpoint (maker.py)
    rwkv-cpu bench run MODEL.rwkv [...] [--markdown | --json]     load, decode roofline, RSS, prefill, batch (run.py)
    rwkv-cpu bench quality CHECKPOINT [--types f16 q8 q4]         KL / top-1 / perplexity vs f32 (quality.py)

weights.py holds the random-weight specs (shared with tools/make_reference.py).
"""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: make a random model, time a model, report quantization quality",
                       description="Benchmark tools: `make` writes a random-weight checkpoint of a preset shape, "
                                   "`run` times models (decode roofline ratio, load, RSS, prefill, batched decode), "
                                   "`quality` compares quantized conversions with the f32 one.")
    bsub = p.add_subparsers(dest="bench_command", metavar="make|run|quality")
    _add_make(bsub)
    from .run import add_parser as add_run
    add_run(bsub)
    from .quality import add_parser as add_quality
    add_quality(bsub)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _add_make(sub) -> None:
    from .weights import PRESETS, VERSIONS
    p = sub.add_parser("make", help="write a random-weight checkpoint (Hugging Face layout, bf16)",
                       description="Write a random-weight RWKV checkpoint with trained-like magnitudes into the "
                                   "directory OUT (config.json + model.safetensors), streaming, deterministic "
                                   "from the seed. Presets: " + ", ".join(
                                       f"{k} ({L} layers, width {C}" + (f", ffn {F}" if F else "") + f", vocab {V})"
                                       for k, (L, C, F, V) in PRESETS.items()))
    p.add_argument("preset", help="|".join(PRESETS))
    p.add_argument("out", help="output directory")
    p.add_argument("--version", default="v5.2", choices=VERSIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--outliers", type=int, default=0, metavar="K",
                   help="K outlier input channels (20-50x larger weights, norms divided to match)")
    p.add_argument("--layers", type=int, default=None, help="override the preset's layer count")
    p.add_argument("--vocab", type=int, default=None, help="override the preset's vocabulary size")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "f16", "f32"))
    p.add_argument("--layout", default="hf", choices=("hf", "blinkdl", "pth"),
                   help="hf: the version's Hugging Face names + config.json; blinkdl: BlinkDL names in a "
                        ".safetensors; pth: a BlinkDL .pth (torch zip)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_make)


def cmd_make(args) -> int:
    from .maker import make_checkpoint
    from .weights import preset_dims, shape_of, PRESETS
    d = preset_dims(args.preset, args.version)
    if args.layers is not None or args.vocab is not None:
        L, C, F, V = PRESETS[args.preset]
        d = shape_of(args.version, C, args.layers or L, args.vocab or V, F)
    last = [0.0]

    def progress(k, n, name):
        import time
        now = time.monotonic()
        if not args.quiet and (now - last[0] > 2 or k == n):
            last[0] = now
            print(f"\r[{k}/{n}] {name[:60]:60s}", end="" if k < n else "\n", file=sys.stderr, flush=True)

    r = make_checkpoint(args.out, args.version, d, seed=args.seed, dtype=args.dtype, outliers=args.outliers,
                        layout=args.layout, progress=progress)
    print(f"wrote {args.out}: RWKV {args.version}, {d['L']} layers, width {d['C']}, ffn {d['F']}, vocab {d['V']}, "
          f"{r['n_params'] / 1e9:.3f} B parameters, {r['bytes'] / 1e9:.2f} GB {args.dtype}, seed {args.seed}, "
          f"{args.outliers} outlier channels, {r['seconds']:.0f} s")
    return 0
