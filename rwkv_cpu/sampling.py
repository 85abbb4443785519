"""Choosing the next token from logits. Vectorised numpy: no Python loop over the vocabulary.

The order of operations (each step is skipped when it is off):

    1. logit bias          logits[id] += bias                                  (logit_bias={id: bias})
    2. banned tokens       logits[id] = -inf                                   (banned_tokens=[...])
    3. repetition penalty  for ids among the last repeat_last_n tokens (prompt and generated):
                           logit / penalty if logit > 0 else logit * penalty   (repetition_penalty, CTRL style)
    4. presence/frequency  logits[id] -= presence + occurrence[id] * frequency, for generated ids, where
                           occurrence fades: every new token multiplies all counts by penalty_decay, then
                           adds 1 to its own (0 for a space, tab or digit token: ChatRWKV's rule)
    5. temperature         logits / temperature; temperature 0 means greedy (argmax after steps 1-4)
    6. top-k               keep the k most likely (0 = off; 1 = greedy)
    7. top-p               keep the most likely tokens until their probability reaches top_p, with the one
                           that crosses it and any tied with that one (1 = off)
    8. min-p               keep tokens with p >= min_p * p_max (0 = off)
    9. draw                from the renormalised distribution, with the sampler's own seeded generator

Steps 4's defaults and decay follow the official RWKV pipeline (ChatRWKV `PIPELINE.generate`: `alpha_presence`,
`alpha_frequency`, `alpha_decay`); steps 5-8 are in the order of Hugging Face's logits warpers.

    >>> import numpy as np
    >>> s = Sampler(temperature=0.8, top_p=0.9, seed=1)
    >>> logits = np.array([1.0, 3.0, 2.0, -1.0], dtype=np.float32)
    >>> int(Sampler(temperature=0).sample(logits))
    1
    >>> [round(float(p), 4) for p in Sampler(temperature=1.0, top_k=2).probs(logits)]
    [0.0, 0.7311, 0.2689, 0.0]
"""
from __future__ import annotations

import collections
import math
import numbers
from typing import Dict, Iterable, Mapping, Optional

import numpy as np

from .errors import RwkvArgumentError

# Candidates examined before falling back to a full sort for top-p: the nucleus of a trained model is
# almost always far smaller than this.
_TOP_P_PREFILTER = 1024
# Token texts that ChatRWKV does not count towards the frequency penalty (they still get the presence one).
_PENALTY_FREE_TEXT = " \t0123456789"


def _number(name: str, value, lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False,
            allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RwkvArgumentError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or (not allow_inf and math.isinf(v)):
        raise RwkvArgumentError(f"{name} must be a finite number, got {value!r}")
    if v < lo or v > hi or (lo_open and v == lo):
        lo_s = "(" if lo_open else "["
        raise RwkvArgumentError(f"{name} must be in {lo_s}{lo:g}, {hi:g}], got {value!r}")
    return v


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise RwkvArgumentError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


class Sampler:
    """A seeded sampler with the filters and penalties listed in the module docstring.

    Args:
        temperature: >= 0; 0 is greedy.
        top_p: in (0, 1]; 1 keeps all.
        top_k: >= 0; 0 keeps all, 1 is greedy.
        seed: an int for a reproducible run (same seed, same logits -> same tokens), None for a fresh one.
        min_p: in [0, 1]; 0 keeps all.
        repetition_penalty: > 0; 1 is off. Applies to the last `repeat_last_n` tokens given to
            `add_context` (the prompt) or sampled.
        repeat_last_n: window of the repetition penalty (0 = off).
        presence_penalty, frequency_penalty: subtracted from the logits of generated tokens (RWKV's
            alpha_presence / alpha_frequency); negative values encourage repetition.
        penalty_decay: in [0, 1]; each new token multiplies every occurrence count by it (RWKV's alpha_decay;
            ChatRWKV uses 0.996). 1 means counts never fade.
        logit_bias: {token id: bias added to its logit} (-inf bans).
        banned_tokens: ids that are never sampled.
        tokenizer: if given, a token whose text is one space, tab or digit adds 0 to its frequency count (as
            ChatRWKV does), so that numbers and indentation are not penalised.
        n_vocab: if given, token ids in logit_bias / banned_tokens are checked against it at once (else at
            the first sample).

    `sample(logits)` returns a token and remembers it for the penalties (`accept=False` to not); `probs(logits)`
    gives the distribution it draws from. `reset()` forgets the history (not the random generator).
    """

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: Optional[int] = None, *,
                 min_p: float = 0.0, repetition_penalty: float = 1.0, repeat_last_n: int = 64,
                 presence_penalty: float = 0.0, frequency_penalty: float = 0.0, penalty_decay: float = 1.0,
                 logit_bias: Optional[Mapping[int, float]] = None, banned_tokens: Iterable[int] = (),
                 tokenizer=None, n_vocab: Optional[int] = None):
        self.temperature = _number("temperature", temperature, 0.0)
        self.top_p = _number("top_p", top_p, 0.0, 1.0, lo_open=True)
        self.top_k = _count("top_k", top_k)
        self.min_p = _number("min_p", min_p, 0.0, 1.0)
        self.repetition_penalty = _number("repetition_penalty", repetition_penalty, 0.0, lo_open=True)
        self.repeat_last_n = _count("repeat_last_n", repeat_last_n)
        self.presence_penalty = _number("presence_penalty", presence_penalty)
        self.frequency_penalty = _number("frequency_penalty", frequency_penalty)
        self.penalty_decay = _number("penalty_decay", penalty_decay, 0.0, 1.0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise RwkvArgumentError(f"seed must be None or an int >= 0, got {seed!r}")
        if n_vocab is not None:
            n_vocab = _count("n_vocab", n_vocab)
        bias = dict(logit_bias or {})
        for k, v in bias.items():
            _count("a logit_bias token id", k)
            _number(f"logit_bias[{k}]", v, allow_inf=True)
            if v == math.inf:
                raise RwkvArgumentError(f"logit_bias[{k}] is +inf; use a large finite bias to force a token")
        self._bias_ids = np.fromiter(bias.keys(), dtype=np.int64, count=len(bias))
        self._bias_vals = np.fromiter(bias.values(), dtype=np.float64, count=len(bias))
        banned = [_count("a banned token id", t) for t in banned_tokens]
        self._banned = np.unique(np.asarray(banned, dtype=np.int64))
        if n_vocab is not None:
            self._check_ids(n_vocab)
        self.seed = None if seed is None else int(seed)
        self.rng = np.random.default_rng(seed)
        self._tokenizer = tokenizer
        self._free_cache: Dict[int, bool] = {}
        self.reset()

    # ---- history for the penalties ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the tokens seen (the penalties start over); the random generator goes on."""
        self._recent: collections.deque = collections.deque(maxlen=max(self.repeat_last_n, 1))
        self._occ_index: Dict[int, int] = {}                    # token id -> slot in _occ_ids / _occ_vals
        self._occ_ids = np.empty(0, dtype=np.int64)
        self._occ_vals = np.empty(0, dtype=np.float64)

    def add_context(self, tokens: Iterable[int]) -> None:
        """Tokens the model has read (the prompt): they count for the repetition penalty only."""
        if self.repeat_last_n:
            self._recent.extend(int(t) for t in tokens)

    def accept(self, token: int) -> None:
        """Record a generated token: repetition window, and the fading occurrence counts."""
        token = int(token)
        if self.repeat_last_n:
            self._recent.append(token)
        if self.penalty_decay != 1.0 and self._occ_vals.size:
            self._occ_vals *= self.penalty_decay
        weight = 0.0 if self._penalty_free(token) else 1.0
        slot = self._occ_index.get(token)
        if slot is None:
            self._occ_index[token] = self._occ_ids.size
            self._occ_ids = np.append(self._occ_ids, token)
            self._occ_vals = np.append(self._occ_vals, weight)
        else:
            self._occ_vals[slot] += weight

    def occurrence(self) -> Dict[int, float]:
        """The current (faded) occurrence count of every generated token."""
        return {int(i): float(v) for i, v in zip(self._occ_ids, self._occ_vals)}

    def _penalty_free(self, token: int) -> bool:
        if self._tokenizer is None:
            return False
        free = self._free_cache.get(token)
        if free is None:
            try:
                text = self._tokenizer.token_bytes(token).decode("utf-8")
            except Exception:  # a partial UTF-8 character, or an id that is not a token
                text = None
            free = text is not None and len(text) == 1 and text in _PENALTY_FREE_TEXT
            self._free_cache[token] = free
        return free

    # ---- the pipeline ----------------------------------------------------------------------------------------
    def _check_ids(self, n_vocab: int) -> None:
        for what, ids in (("logit_bias", self._bias_ids), ("banned_tokens", self._banned)):
            if ids.size and int(ids.max()) >= n_vocab:
                raise RwkvArgumentError(f"{what} names token id {int(ids.max())}, beyond the vocabulary "
                                        f"(n_vocab {n_vocab})")

    def adjusted_logits(self, logits: np.ndarray) -> np.ndarray:
        """Steps 1-4: the logits after bias, bans and penalties (float64 copy)."""
        x = np.array(logits, dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise RwkvArgumentError(f"logits must be a non-empty 1-D array, got shape {x.shape}")
        if np.isnan(x).any():
            raise RwkvArgumentError("the logits contain NaN")
        self._check_ids(x.size)
        if self._bias_ids.size:
            np.add.at(x, self._bias_ids, self._bias_vals)
        if self._banned.size:
            x[self._banned] = -np.inf
        if self.repetition_penalty != 1.0 and self._recent:
            ids = np.unique(np.fromiter(self._recent, dtype=np.int64, count=len(self._recent)))
            ids = ids[(ids >= 0) & (ids < x.size)]
            v = x[ids]
            x[ids] = np.where(v > 0, v / self.repetition_penalty, v * self.repetition_penalty)
        if self._occ_ids.size and (self.presence_penalty or self.frequency_penalty):
            ok = self._occ_ids < x.size
            x[self._occ_ids[ok]] -= self.presence_penalty + self._occ_vals[ok] * self.frequency_penalty
        if not np.isfinite(x.max()):
            raise RwkvArgumentError("every token is banned (all logits are -inf after bias and bans)")
        return x

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    def _candidates(self, x: np.ndarray):
        """Steps 5-8 on adjusted logits: (candidate ids, their probabilities summing to 1)."""
        n = x.size
        x = x / self.temperature
        if 0 < self.top_k < n:
            cand = np.argpartition(x, n - self.top_k)[n - self.top_k:]
        else:
            cand = None
        z = x if cand is None else x[cand]
        # exp in float32 (several times faster than float64 here; relative error ~1e-7), sums in float64
        e = np.exp((z - z.max()).astype(np.float32)).astype(np.float64)
        p = e / e.sum()
        if self.top_p < 1.0:
            cand, p = _top_p(cand, p, self.top_p)
        if self.min_p > 0.0:
            keep = p >= self.min_p * p.max()
            cand = np.flatnonzero(keep) if cand is None else cand[keep]
            p = p[keep]
            p = p / p.sum()
        if cand is None:
            cand = np.arange(n)
        return cand, p

    def probs(self, logits: np.ndarray) -> np.ndarray:
        """The distribution the next token is drawn from (float64 [n_vocab], sums to 1), after every step."""
        x = self.adjusted_logits(logits)
        out = np.zeros_like(x)
        if self.greedy:
            out[int(np.argmax(x))] = 1.0
            return out
        cand, p = self._candidates(x)
        out[cand] = p
        return out

    def sample(self, logits: np.ndarray, accept: bool = True) -> int:
        """Draw the next token; with accept=True (the default) it is recorded for the penalties."""
        x = self.adjusted_logits(logits)
        if self.greedy:
            token = int(np.argmax(x))
        else:
            cand, p = self._candidates(x)
            cdf = np.cumsum(p)
            i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
            token = int(cand[min(i, cand.size - 1)])
        if accept:
            self.accept(token)
        return token

    def __repr__(self) -> str:
        parts = [f"temperature={self.temperature:g}", f"top_p={self.top_p:g}", f"top_k={self.top_k}"]
        for name, off in (("min_p", 0.0), ("repetition_penalty", 1.0), ("presence_penalty", 0.0),
                          ("frequency_penalty", 0.0), ("penalty_decay", 1.0)):
            if getattr(self, name) != off:
                parts.append(f"{name}={getattr(self, name):g}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return f"Sampler({', '.join(parts)})"


def _top_p(cand: Optional[np.ndarray], p: np.ndarray, top_p: float):
    """Keep the most probable entries until their mass reaches top_p (the entry that crosses it included, and
    every entry as probable as it: the official RWKV pipeline's cutoff rule); renormalise.
    cand: ids of the entries of p (None: p covers the whole vocabulary). Returns (ids, probabilities)."""
    n = p.size
    pool = p
    if n > _TOP_P_PREFILTER:      # the nucleus is usually among the few most probable: sort only those
        top = np.partition(p, n - _TOP_P_PREFILTER)[n - _TOP_P_PREFILTER:]
        if top.sum() >= top_p:
            pool = top
    desc = np.sort(pool)[::-1]
    cum = np.cumsum(desc)
    cutoff = desc[min(int(np.searchsorted(cum, top_p, side="left")), desc.size - 1)]
    kept = np.flatnonzero(p >= cutoff)
    q = p[kept]
    return (kept if cand is None else cand[kept]), q / q.sum()


__all__ = ["Sampler"]
