"""The converter: RWKV checkpoints -> `.rwkv` model files, without torch, streaming.

    convert("RWKV-5-World-7B.pth", "eagle-7b.rwkv", quant="q4", keep=["f16:head"])
    rwkv-cpu convert SRC OUT [--quant f32|f16|q8|q4] [--keep DTYPE:PATTERN]... [--tokenizer world|20b|bytes|none|PATH]

SRC is a BlinkDL `.pth`, a `.safetensors` file (BlinkDL or Hugging Face names), an `*.index.json` of
shards, a Hugging Face model directory, or a Hugging Face Hub repository id (`hub`: downloads what is needed). The pieces, in the order a conversion uses them:

    torch_zip, pickle_reader   .pth / pytorch_model.bin: zip archive + restricted pickle interpreter
    safetensors_reader         .safetensors, and sharded checkpoints through their index
    hf                         Hugging Face directories; HF and fla tensor names -> BlinkDL names
    tensors                    LazyTensor: a tensor not yet read, a view of a read-only mmap
    arch, transforms           version detection, dimensions, per-version tensor tables and transforms
    tokenizer_blob             the tokenizer embedded in the file
    quantize                   which type each tensor gets (--quant, --keep), q8/q4 rows via the C library
    writer                     layout, streaming write, atomic rename

Nothing here imports torch or unpickles with `pickle`; a checkpoint is untrusted input.
"""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import threading
import time
from typing import List, Optional, Sequence

from ..errors import RwkvArgumentError, RwkvError
from .arch import plan_model
from .hf import open_hf_directory, open_weights_file, to_blinkdl_names
from .hub import resolve_source
from .quantize import QUANT_TYPES, parse_keep, parse_quant
from .tensors import Checkpoint
from .tokenizer_blob import KIND_NAMES, choose_tokenizer
from .writer import plan_layout, stderr_progress, write_model

__all__ = ["convert", "main", "open_checkpoint"]


def _version() -> str:
    from .. import __version__

    return __version__


def _source_name(src: str) -> str:
    """What the metadata records of SRC: its last two path parts (never the user's whole directory tree)."""
    parts = os.path.normpath(os.path.abspath(src)).split(os.sep)
    return "/".join(p for p in parts[-2:] if p)


def _created() -> str:
    """Creation time (UTC); SOURCE_DATE_EPOCH makes it reproducible, as for other build outputs."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch and epoch.isdigit()
            else datetime.datetime.now(datetime.timezone.utc))
    return when.isoformat(timespec="seconds")


def open_checkpoint(src: str) -> Checkpoint:
    """Open whatever SRC names: a directory (Hugging Face layout) or one weights/index file."""
    if os.path.isdir(src):
        return open_hf_directory(src)
    return open_weights_file(src)


def convert(src: str, out: str, dtype: str = "f16", tokenizer: Optional[str] = None,
            progress: Optional[bool] = None, quant: Optional[str] = None,
            keep: Optional[Sequence[str]] = None) -> dict:
    """Convert checkpoint `src` to the `.rwkv` file `out`. Returns a summary of what was written.

    quant: "f32", "f16", "q8" or "q4", the type of the large matrices (vectors are always f32; see
        rwkv_cpu/convert/quantize.py for the rules). `dtype` is the older name of the same setting.
    keep: per-tensor overrides, "DTYPE:PATTERN" (glob over tensor names), e.g. ["f16:head"].
    tokenizer: None (decide from the vocabulary size), "world", "20b", "bytes", "none", or a file path.
    progress: print a line per tensor to stderr; None means "if stderr is a terminal".
    """
    start = time.monotonic()
    if quant is None:
        quant = dtype
    elif dtype not in ("f16", quant):
        raise RwkvArgumentError(f"dtype={dtype!r} and quant={quant!r} disagree: give only quant")
    dtype = quant
    parse_quant(quant)
    keeps = parse_keep(keep)
    if progress is None:
        progress = sys.stderr.isatty()
    src, hub_name = resolve_source(src)      # a Hugging Face Hub repository id is downloaded (hub.py)
    with open_checkpoint(src) as ckpt:
        tensors, scheme = to_blinkdl_names(ckpt.tensors)
        plan = plan_model(tensors)
        src_dir = src if os.path.isdir(src) else os.path.dirname(os.path.abspath(src))
        tok = choose_tokenizer(tokenizer, plan.dims.n_vocab, [src_dir])
        metadata = {
            "converter": f"rwkv_cpu {_version()}",
            "source": hub_name or _source_name(src),
            "source_format": ckpt.source_format,
            "dtype": dtype,
            "created": _created(),
            "tokenizer": tok.description,
        }
        if keeps:
            metadata["keep"] = list(keep or [])
        layout = plan_layout(plan, dtype, tok, metadata, keeps)
        write_model(layout, out, stderr_progress() if progress else None)
    d = plan.dims
    return {
        "arch": plan.version,
        "dims": {"n_layer": d.n_layer, "n_embd": d.n_embd, "dim_att": d.dim_att, "n_head": d.n_head,
                 "head_size": d.head_size, "n_ffn": d.n_ffn, "n_vocab": d.n_vocab},
        "n_tensors": len(layout.slots),
        "bytes": layout.file_size,
        "seconds": time.monotonic() - start,
        "dtype": dtype,
        "source_format": ckpt.source_format,
        "naming": scheme,
        "tokenizer": KIND_NAMES[tok.kind],
        "output": os.path.abspath(out),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rwkv-cpu convert",
        description="Convert an RWKV checkpoint (.pth, .safetensors, shards index, or a Hugging Face "
                    "directory) to a .rwkv model file. Supported: RWKV-4, 5.0, 5.1, 5.2, 6 and 7.")
    p.add_argument("src", help="checkpoint file, *.index.json, Hugging Face model directory, or a Hugging Face "
                               "Hub repository id such as RWKV/v5-Eagle-7B-HF (downloaded; pip install rwkv_cpu[hub])")
    p.add_argument("out", help="output .rwkv file (written atomically)")
    p.add_argument("--quant", choices=QUANT_TYPES, default=None,
                   help="type of the large matrices, the embedding and the head included (default f16): "
                        "q4 = at most 4.5 bits per weight (4.3125 for widths of a multiple of 256), q8 = 8.5, f16, f32; vectors always stay f32")
    p.add_argument("--dtype", choices=QUANT_TYPES, default=None, help="the older name of --quant")
    p.add_argument("--keep", action="append", metavar="DTYPE:PATTERN", default=[],
                   help="store the tensors matching a glob in another type, e.g. --keep f16:head "
                        "(repeatable; the first match wins)")
    p.add_argument("--tokenizer", metavar="world|20b|bytes|none|PATH", default=None,
                   help="tokenizer to embed; default: World for 65536 tokens, GPT-NeoX 20B for 50277, bytes "
                        "for 256")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="print a line per tensor (default: when stderr is a terminal)")
    g.add_argument("--quiet", dest="progress", action="store_false", help="print nothing but errors")
    return p


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Optional[List[str]] = None) -> int:
    """`rwkv-cpu convert SRC OUT ...`; argv excludes the `convert` word. Returns the exit status.

    SIGTERM is turned into SystemExit while converting, so that a killed conversion, like an
    interrupted one, removes its temporary file."""
    args = _parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        if args.quant and args.dtype and args.quant != args.dtype:
            print("rwkv-cpu convert: error: --dtype is the older name of --quant; give one", file=sys.stderr)
            return 2
        s = convert(args.src, args.out, quant=args.quant or args.dtype or "f16", tokenizer=args.tokenizer,
                    progress=args.progress, keep=args.keep)
    except RwkvError as e:
        print(f"rwkv-cpu convert: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rwkv-cpu convert: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    d = s["dims"]
    if args.progress is not False:
        print(f"wrote {s['output']}: RWKV {s['arch']}, {d['n_layer']} layers, n_embd {d['n_embd']}, "
              f"vocab {d['n_vocab']}, {s['n_tensors']} tensors, {s['bytes'] / 1e6:.1f} MB {s['dtype']}, "
              f"tokenizer {s['tokenizer']}, {s['seconds']:.1f} s", file=sys.stderr)
    return 0
