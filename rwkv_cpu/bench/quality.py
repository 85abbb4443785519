"""`rwkv-cpu bench quality`: what each quantization type loses against the f32 model.

    rwkv-cpu bench quality tests/data/tiny-5v2-730K --text lambada_test.jsonl --docs 100 --markdown
    rwkv-cpu bench quality ref-f32.rwkv --compare q8.rwkv q4.rwkv --text story.txt

SRC is a checkpoint (converted here to f32 and to each --types into --workdir, reused when already there) or
an f32 `.rwkv` file with the files to compare given by --compare. The text is a plain text file, or for a jsonl
file of {"text": ...} documents (LAMBADA), the first --docs documents joined by blank lines; it is read as one
sequence (`rwkv_cpu.evaluate.perplexity`, the definitions of `rwkv-cpu perplexity --compare`). Per type: mean
KL(P_f32 || P_type) over every position (nats), top-1 agreement of the argmaxes, and the perplexity of the text.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import List, Optional

QUALITY_TYPES = ("f16", "q8", "q4")


def read_text(path: str, docs: int) -> str:
    """A plain text file whole, or the first `docs` documents of a jsonl file joined by blank lines."""
    from ..evaluate import is_jsonl
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such text file")
    if not is_jsonl(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.append(json.loads(line)["text"])
                if len(texts) >= docs:
                    break
    return "\n\n".join(texts)


def source_stem(src: str) -> str:
    """A name for SRC's conversions: "tiny-5v2-730K" for tiny-5v2-730K/model.pth, "ckpt" for ckpt/ or ckpt.pth."""
    path = os.path.normpath(os.path.abspath(src))
    stem = os.path.splitext(os.path.basename(path))[0] if os.path.isfile(path) else os.path.basename(path)
    if stem in ("model", "pytorch_model") and os.path.isfile(path):
        stem = os.path.basename(os.path.dirname(path))
    return stem[:-len("-bf16")] if stem.endswith("-bf16") else stem


def converted(src: str, workdir: str, quant: str) -> str:
    """SRC converted to `quant` in workdir (reused if present)."""
    from ..convert import convert
    out = os.path.join(workdir, f"{source_stem(src)}-{quant}.rwkv")
    if not os.path.exists(out):
        convert(src, out, quant=quant, progress=False)
    return out


def compare_models(ref_path: str, others: List[str], text: str, threads: int = 0,
                   limit: Optional[int] = None) -> dict:
    """KL / top-1 / perplexity of each file in `others` against the reference on `text`."""
    from .. import evaluate
    from ..model import Model
    ref = Model(ref_path, n_threads=threads)
    ids = ref.tokenizer.encode(text)
    if limit is not None:
        ids = ids[:limit]
    rows = []
    ref_ppl = None
    for path in others:
        r = evaluate.perplexity(ref, ids, other=Model(path, n_threads=threads))
        ref_ppl = r.perplexity
        rows.append({"model": os.path.basename(path), "type": Model(path, n_threads=1).metadata.get("dtype", "?"),
                     "file_bytes": os.path.getsize(path), "mean_kl": r.compare.mean_kl, "max_kl": r.compare.kl_max,
                     "top1_agreement": r.compare.top1_agreement, "perplexity": r.other_perplexity})
    if ref_ppl is None:
        ref_ppl = evaluate.perplexity(ref, ids).perplexity
    return {"reference": os.path.basename(ref_path), "reference_perplexity": ref_ppl, "n_tokens": len(ids),
            "results": rows}


def format_text(r: dict) -> str:
    lines = [f"reference {r['reference']} (f32): perplexity {r['reference_perplexity']:.4g} over {r['n_tokens']} tokens"]
    for x in r["results"]:
        lines.append(f"  {x['type']:4s} {x['model']}: mean KL {x['mean_kl']:.4g} nats (max {x['max_kl']:.3g}), "
                     f"top-1 agree {x['top1_agreement'] * 100:.2f}%, perplexity {x['perplexity']:.4g}, "
                     f"{x['file_bytes'] / 1e6:.1f} MB")
    return "\n".join(lines)


def format_markdown(r: dict) -> str:
    lines = [f"| type | mean KL vs f32 (nats) | top-1 agreement | perplexity (f32: {r['reference_perplexity']:.4g}) "
             f"| file MB |", "|---|---:|---:|---:|---:|"]
    for x in r["results"]:
        lines.append(f"| {x['type']} | {x['mean_kl']:.3g} | {x['top1_agreement'] * 100:.2f}% | {x['perplexity']:.4g} | "
                     f"{x['file_bytes'] / 1e6:.1f} |")
    lines.append(f"\n({r['reference']}, {r['n_tokens']} tokens read as one sequence)")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("quality", help="mean KL, top-1 agreement and perplexity of each quant type against f32",
                       description=__doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[2])
    p.add_argument("src", help="a checkpoint (converted here), or an f32 .rwkv file with --compare")
    p.add_argument("--text", required=True, help="a text file, or a jsonl file of {\"text\": ...} documents")
    p.add_argument("--docs", type=int, default=100, help="jsonl documents to read (default 100)")
    p.add_argument("--limit", type=int, default=None, help="at most this many tokens")
    p.add_argument("--types", nargs="+", default=list(QUALITY_TYPES), choices=QUALITY_TYPES)
    p.add_argument("--compare", nargs="+", default=None, metavar="MODEL", help="files to compare with an f32 SRC")
    p.add_argument("--workdir", default=None, help="where conversions go (default: a temporary directory)")
    p.add_argument("--threads", type=int, default=0)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true")
    fmt.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quality)


def cmd_quality(args) -> int:
    from ..errors import RwkvArgumentError
    if args.docs < 1 or (args.limit is not None and args.limit < 2):
        raise RwkvArgumentError("--docs must be >= 1 and --limit >= 2")
    text = read_text(args.text, args.docs)
    with tempfile.TemporaryDirectory(prefix="rwkv-bench-quality-") as tmp:
        if args.src.endswith(".rwkv") and os.path.isfile(args.src):
            if not args.compare:
                raise RwkvArgumentError("an f32 .rwkv SRC needs --compare FILES (or give a checkpoint)")
            ref, others = args.src, args.compare
        else:
            work = args.workdir or tmp
            os.makedirs(work, exist_ok=True)
            ref = converted(args.src, work, "f32")
            others = [converted(args.src, work, q) for q in args.types]
        r = compare_models(ref, others, text, args.threads, args.limit)
    r.update(text=os.path.basename(args.text))
    if args.json:
        print(json.dumps(r, indent=1))
    elif args.markdown:
        print(format_markdown(r))
    else:
        print(format_text(r))
    sys.stdout.flush()
    return 0
