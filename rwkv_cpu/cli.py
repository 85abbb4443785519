"""The `rwkv-cpu` command line.

    rwkv-cpu generate [MODEL] [PROMPT]    stream text (the bundled tiny model when MODEL is left out)
    rwkv-cpu convert SRC OUT              a .pth / Hugging Face checkpoint to a .rwkv file
    rwkv-cpu info MODEL                   architecture, dimensions, tensors, CPU features and kernels
    rwkv-cpu chat [MODEL]                 chat (User:/Assistant: turns; /reset /save /load /help /quit)
    rwkv-cpu perplexity MODEL FILE        perplexity of a text, LAMBADA accuracy of a jsonl; --compare OTHER
    rwkv-cpu bench make|run|quality       random models, speed and roofline ratio, quantization quality
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import List, Optional

DEFAULT_PROMPT = "\nIn a shocking finding, scientists discovered"


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a prompt",
                       description="Stream text from a model. With one argument, it is the model if it names a "
                                   "file, else the prompt (and the bundled tiny model is used).")
    p.add_argument("args", nargs="*", metavar="[MODEL] [PROMPT]")
    p.add_argument("-m", "--model", help="model file (.rwkv); default: the bundled tiny model")
    p.add_argument("-p", "--prompt", help="prompt text")
    p.add_argument("-n", "--max-tokens", type=int, default=100)
    p.add_argument("-t", "--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.85)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--presence-penalty", type=float, default=0.0)
    p.add_argument("--frequency-penalty", type=float, default=0.0)
    p.add_argument("--penalty-decay", type=float, default=1.0, help="occurrence counts fade by this each token")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop at TEXT (repeatable)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="threads (default: physical cores)")
    p.set_defaults(func=cmd_generate)


def _split_model_prompt(args) -> tuple:
    model, prompt = args.model, args.prompt
    rest = list(args.args)
    if len(rest) > 2:
        raise SystemExit("rwkv-cpu generate: expected at most MODEL and PROMPT (quote the prompt)")
    if len(rest) == 2:
        if model or prompt:
            raise SystemExit("rwkv-cpu generate: give MODEL and PROMPT either as arguments or as options")
        model, prompt = rest
    elif len(rest) == 1:
        if model is None and prompt is None and os.path.isfile(rest[0]):
            model = rest[0]
        elif prompt is None:
            prompt = rest[0]
        else:
            model = rest[0]
    return model, (prompt if prompt is not None else DEFAULT_PROMPT)


def _unescape(text: str) -> str:
    """\\n, \\t, \\r and \\\\ in a command-line argument (e.g. --stop '\\n\\n') as the characters they name."""
    return re.sub(r"\\([ntr\\])", lambda m: {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[m.group(1)], text)


def cmd_generate(args) -> int:
    from .model import Model
    from .sampling import Sampler
    model_path, prompt = _split_model_prompt(args)
    if args.max_tokens < 0:
        raise SystemExit("rwkv-cpu generate: --max-tokens must be >= 0")
    sampling = dict(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                    repetition_penalty=args.repetition_penalty, presence_penalty=args.presence_penalty,
                    frequency_penalty=args.frequency_penalty, penalty_decay=args.penalty_decay, seed=args.seed)
    Sampler(**sampling)  # validate before loading anything
    stop = [_unescape(s) for s in args.stop or []]
    t0 = time.perf_counter()
    model = Model(model_path, n_threads=args.threads)
    t_load = time.perf_counter() - t0
    gen = model.generate(prompt, args.max_tokens, stop=stop, **sampling)
    out = sys.stdout
    out.write(prompt)
    out.flush()
    for piece in gen:
        out.write(piece)
        out.flush()
    out.write("\n")
    name = os.path.basename(model.path)
    t_prompt = gen.prompt_seconds
    print(f"[{name}: load {t_load * 1e3:.0f} ms, prompt {gen.n_prompt_tokens} tokens at "
          f"{gen.n_prompt_tokens / t_prompt if t_prompt > 0 else 0:.1f} tok/s, generated {len(gen.tokens)} tokens at "
          f"{gen.tokens_per_second:.1f} tok/s, {model.n_threads} threads, stop: {gen.stop_reason}]", file=sys.stderr)
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a model file (or a saved state file)")
    p.add_argument("model", nargs="?", help="model file (.rwkv) or state file; default: the bundled tiny model")
    p.add_argument("--tensors", action="store_true", help="list every tensor")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from ._ffi import ffi, lib
    from .model import Model
    if args.model and _is_state_file(args.model):
        return _state_info(args.model)
    model = Model(args.model, n_threads=1)
    tensors = model.tensors()
    dtype_of = {t.name: t.dtype for t in tensors}
    by_dtype = {}
    for t in tensors:
        parent = t.name.rsplit(".", 1)[0]
        if t.name.endswith((".outlier_cols", ".outlier_scales")) and parent in dtype_of:
            by_dtype.setdefault(dtype_of[parent], [0, 0, 0])[2] += t.nbytes  # column scales: their matrix's cost
            continue
        n = 1
        for d in t.shape:
            n *= d
        c = by_dtype.setdefault(t.dtype, [0, 0, 0])
        c[0] += 1
        c[1] += n
        c[2] += t.nbytes
    weight_bytes = sum(t.nbytes for t in tensors)
    meta = model.metadata
    print(f"file          {model.path} ({model.file_size / 2**20:.1f} MiB)")
    print(f"architecture  RWKV {model.arch}")
    print(f"dimensions    n_layer {model.n_layer}, n_embd {model.n_embd}, n_head {model.n_head} x head_size "
          f"{model.head_size}, n_ffn {model.n_ffn}, n_vocab {model.n_vocab}")
    print(f"parameters    {model.n_params:,} ({model.n_params / 1e6:.2f} M), "
          f"{8 * weight_bytes / model.n_params:.2f} bits per weight")
    for dt, (cnt, n, b) in sorted(by_dtype.items()):
        # exact: every byte of the type's tensors, block scales and column scales included (alignment excluded)
        print(f"  {dt:6s}      {cnt} tensors, {n:,} weights, {b / 2**20:.1f} MiB, {8 * b / n:.4f} bits per weight")
    print(f"tokenizer     {model.tokenizer.kind} (vocab {model.tokenizer.vocab_size})")
    print(f"state         {model.state_size:,} floats ({model.state_size * 4 / 2**20:.2f} MiB per sequence)")
    print(f"memory        {model.file_size / 2**20:.1f} MiB mapped (weights used in place) + the states")
    if meta:
        print(f"converted     from {meta.get('source', '?')} ({meta.get('source_format', '?')}) by "
              f"{meta.get('converter', '?')}")
    print(f"cpu           {ffi.string(lib.rwkv_cpu_features()).decode() or '(no SIMD features)'}")
    note = ffi.string(lib.rwkv_kernel_note()).decode()
    print(f"kernels       {ffi.string(lib.rwkv_kernel_name()).decode()}{f'  ({note})' if note else ''}")
    if args.tensors:
        for t in tensors:
            print(f"  {t.name:40s} {t.dtype:6s} {str(list(t.shape)):20s} {t.nbytes:>12,}")
    return 0


def _is_state_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"RWKVSTA\0"
    except OSError:
        return False


def _state_info(path: str) -> int:
    from .model import read_state_header
    h = read_state_header(path)
    print(f"file          {path} ({h['file_size'] / 2**20:.2f} MiB)")
    print(f"state file    version {h['version']}, {h['n_floats']:,} floats")
    print(f"for a model   RWKV {h['arch']}: n_layer {h['n_layer']}, n_embd {h['n_embd']}, n_head {h['n_head']} x "
          f"head_size {h['head_size']}, n_ffn {h['n_ffn']}, n_vocab {h['n_vocab']}")
    for k, v in h["meta"].items():
        print(f"  {k:12s}{v}")
    return 0


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint to .rwkv", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: __import__("rwkv_cpu.convert", fromlist=["main"]).main(a.rest))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="rwkv-cpu", description="Run RWKV language models on the CPU.")
    parser.add_argument("--version", action="version", version=f"rwkv-cpu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_generate(sub)
    _add_convert(sub)
    _add_info(sub)
    from .chat import add_parser as _add_chat
    _add_chat(sub)
    from .evaluate import add_parser as _add_perplexity
    _add_perplexity(sub)
    from .bench import add_parser as _add_bench
    _add_bench(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from .errors import RwkvError
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:   # commands that pass their arguments on (convert): a leading option such as --help is theirs too
        if not isinstance(getattr(args, "rest", None), list):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.rest = extra + args.rest
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (RwkvError, OSError, ValueError) as e:
        print(f"rwkv-cpu {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
