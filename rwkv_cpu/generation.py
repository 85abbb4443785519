"""Streaming text generation: `Model.generate` (an iterator of text pieces) and `Model.complete` (the callback form).

    >>> import rwkv_cpu
    >>> model = rwkv_cpu.Model()
    >>> gen = model.generate("The cat sat on the", max_tokens=20, temperature=0, stop=["\\n"])
    >>> text = "".join(gen)                 # pieces as they are ready
    >>> gen.stop_reason in ("stop_string", "max_tokens", "stop_token")
    True

What a piece never does:
  * split a UTF-8 character: bytes of a character that spans tokens (CJK, emoji) are held until it is whole;
  * contain any part of a stop string: text that could be the start of a stop string is held back until it is
    known not to be one, and the matched stop string (and anything after it) is never yielded.

After the run the object tells what happened: `text` (everything yielded), `tokens` (generated ids, without a stop
token), `stop_reason` ("stop_token", "stop_string" or "max_tokens"; "closed" if the caller stopped iterating),
`n_prompt_tokens`, `n_cached_tokens` (prompt tokens a PrefixCache supplied), timings, and `state`: the state
after the prompt and every generated token except a stop token (so a conversation can go on from it; a token that
completes a stop string *is* read).
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, List, Optional, Sequence, Union

import numpy as np

from .errors import RwkvArgumentError
from .sampling import Sampler

Prompt = Union[str, Sequence[int], np.ndarray]

# Sampler keywords Model.generate accepts, and the defaults it uses when they are not given.
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 0.85}
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "seed", "min_p", "repetition_penalty", "repeat_last_n",
                 "presence_penalty", "frequency_penalty", "penalty_decay", "logit_bias", "banned_tokens")


class StopMatcher:
    """Finds stop strings in streamed text. push(piece) returns (text safe to emit now, whether a stop string
    was found); text that might be the start of a stop string is held back until the next piece decides it.
    finish() returns what is still held back once the stream has ended without a stop."""

    def __init__(self, stops: Sequence[str]):
        self.stops = list(stops)
        self.held = ""
        self.found: Optional[str] = None

    def push(self, piece: str):
        if not self.stops:
            return piece, False
        text = self.held + piece
        first, which = -1, None
        for s in self.stops:
            i = text.find(s)
            if i >= 0 and (first < 0 or i < first):
                first, which = i, s
        if first >= 0:
            self.held, self.found = "", which
            return text[:first], True
        keep = self._partial_suffix(text)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], False

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of a stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def finish(self) -> str:
        out, self.held = self.held, ""
        return out


def normalize_stops(stop: Union[None, str, Iterable[str]]) -> List[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    for s in stops:
        if not isinstance(s, str) or not s:
            raise RwkvArgumentError(f"stop strings must be non-empty str, got {s!r}")
    return stops


def make_sampler(model, sampler: Optional[Sampler], sampling: dict) -> Sampler:
    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise RwkvArgumentError(f"unknown generation argument(s) {', '.join(unknown)}; sampling arguments are "
                                f"{', '.join(SAMPLING_KEYS)}")
    if sampler is not None:
        if sampling:
            raise RwkvArgumentError("pass either a Sampler or sampling arguments, not both")
        if not isinstance(sampler, Sampler):
            raise RwkvArgumentError(f"sampler must be a rwkv_cpu.Sampler, got {type(sampler).__name__}")
        return sampler
    kw = {**SAMPLING_DEFAULTS, **sampling}
    return Sampler(**kw, tokenizer=model.tokenizer, n_vocab=model.n_vocab)


def default_stop_tokens(model) -> List[int]:
    """End of text: id 0 for World and 20B vocabularies; none for the byte tokenizer (id 0 is the NUL byte)."""
    return [] if model.tokenizer.kind == "bytes" else [0]


class Generation:
    """One streaming generation; iterate it for text pieces (see the module docstring). Made by Model.generate."""

    def __init__(self, model, prompt: Prompt, max_tokens: int = 100, *, sampler: Optional[Sampler] = None,
                 stop: Union[None, str, Iterable[str]] = None, stop_tokens: Optional[Iterable[int]] = None,
                 state=None, cache=None, **sampling):
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 0:
            raise RwkvArgumentError(f"max_tokens must be an int >= 0, got {max_tokens!r}")
        if state is not None and cache is not None:
            raise RwkvArgumentError("a PrefixCache caches runs from an empty state; pass state or cache, not both")
        if state is not None:
            model._check_state(state)
        self.model = model
        tok = model.tokenizer
        self.prompt_tokens = tok.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not self.prompt_tokens:
            raise RwkvArgumentError("the prompt is empty")
        self.max_tokens = int(max_tokens)
        self.sampler = make_sampler(model, sampler, sampling)
        self.stops = normalize_stops(stop)
        self.stop_tokens = set(default_stop_tokens(model) if stop_tokens is None else (int(t) for t in stop_tokens))
        self.state = state
        self.cache = cache
        # filled in as it runs
        self.text = ""
        self.tokens: List[int] = []
        self.stop_reason: Optional[str] = None
        self.stop: Union[None, str, int] = None          # the stop string or stop token that ended it
        self.logits: Optional[np.ndarray] = None         # after the last token read
        self.n_prompt_tokens = len(self.prompt_tokens)
        self.n_cached_tokens = 0
        self.prompt_seconds = 0.0
        self.generate_seconds = 0.0
        self._it = self._run()

    # ---- iteration ------------------------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self._it)

    def close(self) -> None:
        """Stop early; the state has read every token whose text was yielded."""
        self._it.close()

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    @property
    def tokens_per_second(self) -> float:
        return len(self.tokens) / self.generate_seconds if self.generate_seconds > 0 else 0.0

    # ---- the loop ---------------------------------------------------------------------------------------------
    def _read_prompt(self) -> None:
        t0 = time.perf_counter()
        model, ids = self.model, self.prompt_tokens
        if self.cache is not None:
            before = self.cache.stats["tokens_reused"]
            self.logits, self.state = self.cache.forward(ids)
            self.n_cached_tokens = self.cache.stats["tokens_reused"] - before
        else:
            self.logits, self.state = model.forward(ids, self.state)
        self.sampler.add_context(ids)
        self.prompt_seconds = time.perf_counter() - t0

    def _feed(self, token: int) -> None:
        self.logits, _ = self.model.forward(token, self.state)
        self.tokens.append(token)

    def _emit(self, text: str):
        self.text += text
        return text

    def _run(self):
        self._read_prompt()
        decoder = self.model.tokenizer.stream_decoder()
        matcher = StopMatcher(self.stops)
        t0 = time.perf_counter()
        pending = None          # a sampled token whose text went out but which the state has not read yet
        try:
            for _ in range(self.max_tokens):
                token = self.sampler.sample(self.logits)
                if token in self.stop_tokens:
                    self.stop_reason, self.stop = "stop_token", token
                    break
                pending = token
                out, hit = matcher.push(decoder.feed(token))
                if out:
                    yield self._emit(out)
                self._feed(token)
                pending = None
                if hit:
                    self.stop_reason, self.stop = "stop_string", matcher.found
                    break
            else:
                self.stop_reason = "max_tokens"
            if self.stop_reason != "stop_string":
                out, hit = matcher.push(decoder.flush())    # an incomplete character at the very end: U+FFFD
                if hit:
                    self.stop_reason, self.stop = "stop_string", matcher.found
                else:
                    out += matcher.finish()
                if out:
                    yield self._emit(out)
        except GeneratorExit:
            if pending is not None:             # the caller stopped after seeing this token's text
                self._feed(pending)
            if self.stop_reason is None:
                self.stop_reason = "closed"
            raise
        finally:
            self.generate_seconds = time.perf_counter() - t0

    def run(self, callback: Optional[Callable[[str], None]] = None) -> "Generation":
        """Run to the end, calling callback(piece) for each piece; returns self."""
        for piece in self:
            if callback is not None:
                callback(piece)
        return self

    def __repr__(self) -> str:
        return (f"<rwkv_cpu.Generation {len(self.tokens)} tokens, stop_reason={self.stop_reason!r}, "
                f"text={self.text[:40]!r}{'...' if len(self.text) > 40 else ''}>")


__all__ = ["Generation", "StopMatcher", "SAMPLING_KEYS"]
