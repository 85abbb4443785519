"""Evaluation: perplexity of a text, LAMBADA last-word accuracy, and how far one model file is from another.

    >>> import rwkv_cpu
    >>> from rwkv_cpu import evaluate
    >>> model = rwkv_cpu.Model()
    >>> r = evaluate.perplexity(model, "The quick brown fox jumps over the lazy dog.")
    >>> r.n_predicted, r.perplexity > 1.0
    (43, True)

Definitions (the same as RWKV's own evaluations, e.g. ChatRWKV `run_lambada.py` / `benchmark_more.py`):

* **Perplexity of a text**: exp of the mean negative log-likelihood (natural log) of each token given those before
  it. The text is read as one sequence (an RNN has no context window; the state carries on). With `bos=True`
  (default for the World and 20B vocabularies) the sequence starts with end-of-text, id 0, as a document
  separator, so the first token is predicted too; byte-level models start with the first byte, and the first token
  is not predicted. Also reported: bits per byte (total NLL / ln 2 / UTF-8 bytes of the predicted text).
* **LAMBADA** (one `{"text": ...}` JSON object per line): the target is the text after the last space, the context
  what comes before. Each document is read from an empty state as [0] + context + " " + target (no 0 for byte
  models). Accuracy: every target token is the argmax (greedy decoding reproduces the word). Perplexity:
  exp(-mean over documents of the target's total log-likelihood), as RWKV reports it.
* **Comparing two models** (e.g. a q4 file against its f16 file) on the same tokens: mean KL(P_model || P_other)
  over the positions (nats; all positions of a text, the target positions of LAMBADA), and top-1 agreement, the
  share of positions where the two argmaxes agree.

Log-softmax is taken in float64 from the float32 logits, so a model compared with itself gives KL exactly 0.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import ModelFormatError, RwkvArgumentError
from .progress import Progress

# Tokens per forward call: logits for a chunk are [CHUNK, n_vocab] float32 (32 MiB for 128 x 65536).
CHUNK = 128


# ---- maths on logits -------------------------------------------------------------------------------------------
def log_softmax(logits: np.ndarray) -> np.ndarray:
    """[..., V] float32 -> float64 log-probabilities."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def token_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(target_t) under each row: [T, V], [T] -> [T]."""
    lp = log_softmax(logits)
    return lp[np.arange(len(targets)), targets]


def kl_divergence(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """KL(P || Q) per row, nats: [T, V], [T, V] -> [T]."""
    lp, lq = log_softmax(logits_p), log_softmax(logits_q)
    return np.maximum((np.exp(lp) * (lp - lq)).sum(axis=-1), 0.0)


@dataclass
class Comparison:
    """How far the other model's next-token distributions are from the model's."""
    n_positions: int = 0
    kl_sum: float = 0.0
    kl_max: float = 0.0
    top1_same: int = 0
    other_nll_sum: float = 0.0      # the other model's NLL on the same targets

    def add(self, logits: np.ndarray, other_logits: np.ndarray) -> None:
        kl = kl_divergence(logits, other_logits)
        self.n_positions += kl.size
        self.kl_sum += float(kl.sum())
        self.kl_max = max(self.kl_max, float(kl.max(initial=0.0)))
        self.top1_same += int((logits.argmax(axis=-1) == other_logits.argmax(axis=-1)).sum())

    @property
    def mean_kl(self) -> float:
        return self.kl_sum / self.n_positions if self.n_positions else 0.0

    @property
    def top1_agreement(self) -> float:
        return self.top1_same / self.n_positions if self.n_positions else 0.0


@dataclass
class TextResult:
    """Perplexity of a text (see the module docstring)."""
    n_tokens: int = 0                # tokens in the text
    n_predicted: int = 0
    nll_sum: float = 0.0             # natural log
    n_bytes: int = 0                 # UTF-8 bytes of the predicted tokens
    seconds: float = 0.0
    compare: Optional[Comparison] = None

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll_sum / self.n_predicted) if self.n_predicted else float("nan")

    @property
    def bits_per_byte(self) -> float:
        return self.nll_sum / math.log(2) / self.n_bytes if self.n_bytes else float("nan")

    @property
    def other_perplexity(self) -> Optional[float]:
        if self.compare is None or not self.n_predicted:
            return None
        return math.exp(self.compare.other_nll_sum / self.n_predicted)


@dataclass
class LambadaResult:
    """LAMBADA last-word accuracy and perplexity (see the module docstring)."""
    n_docs: int = 0
    n_correct: int = 0
    logprob_sum: float = 0.0         # sum over documents of the target's log-likelihood
    n_target_tokens: int = 0
    seconds: float = 0.0
    compare: Optional[Comparison] = None
    other_correct: int = 0
    other_logprob_sum: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.n_correct / self.n_docs if self.n_docs else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(-self.logprob_sum / self.n_docs) if self.n_docs else float("nan")

    @property
    def other_accuracy(self) -> Optional[float]:
        return self.other_correct / self.n_docs if self.compare is not None and self.n_docs else None

    @property
    def other_perplexity(self) -> Optional[float]:
        return math.exp(-self.other_logprob_sum / self.n_docs) if self.compare is not None and self.n_docs else None


# ---- inputs --------------------------------------------------------------------------------------------------------
def default_bos(model) -> bool:
    """Start documents with end-of-text (id 0) for World and 20B vocabularies, not for byte models."""
    return model.tokenizer.kind != "bytes"


def _check_pair(model, other) -> None:
    if other is None:
        return
    if other.n_vocab != model.n_vocab:
        raise RwkvArgumentError(f"cannot compare models with different vocabularies ({model.n_vocab} vs "
                                f"{other.n_vocab} tokens)")


def read_lambada(path: str, limit: Optional[int] = None) -> List[Tuple[str, str]]:
    """(context, target) pairs from a LAMBADA-style jsonl file: the target is " " + the text after the last space."""
    docs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ModelFormatError(f"{path}:{lineno}: expected a JSON object with a \"text\" string") from None
            if not isinstance(text, str) or " " not in text.strip():
                raise ModelFormatError(f"{path}:{lineno}: the text needs a space before its last word")
            context, word = text.rsplit(" ", 1)
            docs.append((context, " " + word))
            if limit is not None and len(docs) >= limit:
                break
    return docs


def is_jsonl(path: str) -> bool:
    """A LAMBADA-style file: named *.jsonl, or its first non-blank line is a JSON object with "text"."""
    if path.endswith(".jsonl"):
        return True
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(obj, dict) and "text" in obj
    return False


# ---- perplexity of a text ------------------------------------------------------------------------------------------
def perplexity(model, text: Union[str, Sequence[int]], *, other=None, bos: Optional[bool] = None,
               chunk: int = CHUNK, progress: Optional[bool] = False) -> TextResult:
    """Perplexity of `text` (a str, or token ids) read as one sequence; with `other`, also KL / top-1 against
    that model on the same tokens. progress: a bar on stderr (None: if it is a terminal)."""
    _check_pair(model, other)
    ids = model.tokenizer.encode(text) if isinstance(text, str) else [int(t) for t in text]
    if bos is None:
        bos = default_bos(model)
    seq = ([0] if bos else []) + ids
    if len(seq) < 2:
        raise RwkvArgumentError("the text is too short to predict anything (it needs two tokens, or one with bos)")
    if chunk < 1:
        raise RwkvArgumentError(f"chunk must be >= 1, got {chunk}")
    result = TextResult(n_tokens=len(ids), compare=Comparison() if other is not None else None)
    seq_arr = np.asarray(seq, dtype=np.int32)
    targets = seq_arr[1:]
    result.n_bytes = len(model.tokenizer.decode_bytes(targets))
    state = model.new_state()
    other_state = other.new_state() if other is not None else None
    t0 = time.perf_counter()
    n_pred = len(targets)
    with Progress(n_pred, "perplexity", "tok", enabled=progress) as bar:
        for start in range(0, n_pred, chunk):
            inp = seq_arr[start:min(start + chunk, n_pred)]   # row i predicts seq[start + i + 1]; the last
            tgt = targets[start:start + len(inp)]              # token predicts nothing and is not read
            logits, state = model.forward(inp, state, all_logits=True)
            result.nll_sum -= float(token_logprobs(logits, tgt).sum())
            if other is not None:
                other_logits, other_state = other.forward(inp, other_state, all_logits=True)
                result.compare.add(logits, other_logits)
                result.compare.other_nll_sum -= float(token_logprobs(other_logits, tgt).sum())
            result.n_predicted += len(tgt)
            bar.update(len(tgt), info=f"ppl {result.perplexity:.3f}")
    result.seconds = time.perf_counter() - t0
    return result


# ---- LAMBADA ------------------------------------------------------------------------------------------------------------
def lambada(model, docs: Iterable[Tuple[str, str]], *, other=None, bos: Optional[bool] = None,
            progress: Optional[bool] = False) -> LambadaResult:
    """Last-word accuracy and perplexity over (context, target) pairs (read_lambada); with `other`, the other
    model's accuracy and perplexity and KL / top-1 on the target positions."""
    _check_pair(model, other)
    docs = list(docs)
    if bos is None:
        bos = default_bos(model)
    tok = model.tokenizer
    result = LambadaResult(compare=Comparison() if other is not None else None)
    t0 = time.perf_counter()
    with Progress(len(docs), "lambada", "docs", enabled=progress) as bar:
        for context, target in docs:
            src = ([0] if bos else []) + tok.encode(context)
            dst = tok.encode(target)
            if not src or not dst:
                raise RwkvArgumentError(f"a LAMBADA document with an empty context or target: {context[-40:]!r}")
            lp, correct, logits = _score_target(model, src, dst)
            result.n_docs += 1
            result.n_target_tokens += len(dst)
            result.logprob_sum += lp
            result.n_correct += correct
            if other is not None:
                olp, ocorrect, other_logits = _score_target(other, src, dst)
                result.other_logprob_sum += olp
                result.other_correct += ocorrect
                result.compare.add(logits, other_logits)
            bar.update(1, info=f"acc {result.accuracy * 100:.1f}% ppl {result.perplexity:.2f}")
    result.seconds = time.perf_counter() - t0
    return result


def _score_target(model, src: List[int], dst: List[int]):
    """(target log-likelihood, all target tokens greedy-correct, logits at the target positions [len(dst), V])."""
    state = None
    if len(src) > 1:
        _, state = model.forward(src[:-1])                # no logits needed for the context
    logits, _ = model.forward([src[-1]] + dst[:-1], state, all_logits=True)
    dst_arr = np.asarray(dst)
    lp = float(token_logprobs(logits, dst_arr).sum())
    correct = bool((logits.argmax(axis=-1) == dst_arr).all())
    return lp, correct, logits


# ---- the command line ------------------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser("perplexity", help="perplexity of a text file, or LAMBADA accuracy of a jsonl file",
                       description="Perplexity of a plain text file (read as one sequence), or last-word accuracy and "
                                   "perplexity of a LAMBADA-style jsonl file ({\"text\": ...} per line). --compare "
                                   "adds mean KL divergence and top-1 agreement against another model file.")
    p.add_argument("model", help="model file (.rwkv)")
    p.add_argument("file", help="a text file, or a .jsonl file of {\"text\": ...} documents")
    p.add_argument("--compare", metavar="OTHER_MODEL", help="a second model file (e.g. the q4 of an f16 model)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N documents (jsonl) or N tokens (text)")
    p.add_argument("--format", choices=("auto", "text", "lambada"), default="auto")
    bos = p.add_mutually_exclusive_group()
    bos.add_argument("--bos", dest="bos", action="store_true", default=None,
                     help="start with end-of-text (id 0) (default for World/20B vocabularies)")
    bos.add_argument("--no-bos", dest="bos", action="store_false")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_perplexity)


def _num(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 1e5 else f"{x:.4g}"


def cmd_perplexity(args) -> int:
    from .model import Model
    if args.limit is not None and args.limit < 1:
        raise RwkvArgumentError("--limit must be >= 1")
    if not os.path.isfile(args.file):
        raise RwkvArgumentError(f"{args.file}: no such file")
    fmt = args.format if args.format != "auto" else ("lambada" if is_jsonl(args.file) else "text")
    model = Model(args.model, n_threads=args.threads)
    other = Model(args.compare, n_threads=args.threads) if args.compare else None
    progress = None        # a bar when stderr is a terminal
    if fmt == "lambada":
        docs = read_lambada(args.file, args.limit)
        r = lambada(model, docs, other=other, bos=args.bos, progress=progress)
        out = {"file": args.file, "format": "lambada", "model": args.model, "documents": r.n_docs,
               "accuracy": r.accuracy, "perplexity": r.perplexity, "target_tokens": r.n_target_tokens,
               "seconds": r.seconds}
        lines = [f"{os.path.basename(args.model)} on {os.path.basename(args.file)}: {r.n_docs} documents, "
                 f"{r.n_target_tokens} target tokens, {r.seconds:.1f} s",
                 f"  accuracy     {r.accuracy * 100:.2f}%", f"  perplexity   {_num(r.perplexity)}"]
        if other is not None:
            out.update(other_accuracy=r.other_accuracy, other_perplexity=r.other_perplexity)
            lines += [f"{os.path.basename(args.compare)}:", f"  accuracy     {r.other_accuracy * 100:.2f}%",
                      f"  perplexity   {_num(r.other_perplexity)}"]
    else:
        with open(args.file, encoding="utf-8", errors="replace") as f:
            text = f.read()
        ids = model.tokenizer.encode(text)
        if args.limit is not None:
            ids = ids[:args.limit]
        r = perplexity(model, ids, other=other, bos=args.bos, progress=progress)
        out = {"file": args.file, "format": "text", "model": args.model, "tokens": r.n_tokens,
               "predicted": r.n_predicted, "perplexity": r.perplexity, "bits_per_byte": r.bits_per_byte,
               "seconds": r.seconds}
        lines = [f"{os.path.basename(args.model)} on {os.path.basename(args.file)}: {r.n_predicted} tokens "
                 f"predicted, {r.seconds:.1f} s ({r.n_predicted / r.seconds if r.seconds else 0:.1f} tok/s)",
                 f"  perplexity   {_num(r.perplexity)}", f"  bits/byte    {r.bits_per_byte:.4f}"]
        if other is not None:
            out["other_perplexity"] = r.other_perplexity
            lines += [f"{os.path.basename(args.compare)}:", f"  perplexity   {_num(r.other_perplexity)}"]
    if other is not None:
        c = r.compare
        out.update(compare=args.compare, mean_kl=c.mean_kl, max_kl=c.kl_max, top1_agreement=c.top1_agreement,
                   positions=c.n_positions)
        lines += [f"{os.path.basename(args.compare)} against {os.path.basename(args.model)} "
                  f"({c.n_positions} positions):",
                  f"  mean KL      {c.mean_kl:.4g} nats (max {c.kl_max:.4g})",
                  f"  top-1 agree  {c.top1_agreement * 100:.2f}%"]
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print("\n".join(lines))
    return 0


__all__ = ["perplexity", "lambada", "read_lambada", "log_softmax", "token_logprobs", "kl_divergence",
           "TextResult", "LambadaResult", "Comparison", "CHUNK"]
