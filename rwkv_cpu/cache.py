"""A prompt-prefix cache: the state after a token prefix is kept, so that a request that starts with the same
tokens (a system prompt, a few-shot preamble, the conversation so far) does not read them again.

    >>> import rwkv_cpu
    >>> model = rwkv_cpu.Model()
    >>> cache = rwkv_cpu.PrefixCache(model, max_bytes=16 << 20)
    >>> system = model.tokenizer.encode("You are a helpful assistant.\\n\\n")
    >>> _ = cache.forward(system)                       # warm it with the system prompt
    >>> logits, state = cache.forward(system + model.tokenizer.encode("User: hi\\n\\nAssistant:"))
    >>> cache.stats["tokens_reused"] == len(system)     # only the question was read
    True

Design. Entries are keyed by their token sequence and hold a copy of the state after those tokens and the logits
there. `forward(tokens)` starts from the longest cached prefix of `tokens` and reads only the rest; warm the cache
with a prefix you know will recur (`cache.forward(system_prompt_tokens)`). An RNN state cannot be rewound, so other
shared prefixes are found as they happen: when a request shares a longer prefix with a
cached sequence than any cached prefix (e.g. the same system prompt followed by another question), the request is
read in two parts and the state at the shared point is cached too (no extra work); the next request with that
prefix hits it. The end of every request is cached as well (for follow-ups that extend it, as in chat).
Entries are evicted least recently used first when their memory (state + logits + key) passes `max_bytes`.

A hit gives the logits a fresh run gives, to within float rounding: the state is an exact copy, and reading
[prefix] then [rest] is bit for bit what `model.forward(rest, model.forward(prefix)[1])` gives. It can differ
from reading them in one call in the last bits (~1e-6), because the matrix kernels add up in an order that
depends on how many tokens a call reads (a few tokens take the small-batch kernels, longer chunks the GEMM);
the tests check both.
A cache belongs to one model (states of another model's shape are refused), and is not thread-safe: give each
thread its own, or lock around it.
"""
from __future__ import annotations

import collections
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import RwkvArgumentError


class _Entry:
    __slots__ = ("key", "state", "logits", "nbytes")

    def __init__(self, key: np.ndarray, state, logits: np.ndarray):
        self.key = key
        self.state = state
        self.logits = logits
        self.nbytes = key.nbytes + state.size * 4 + logits.nbytes


class PrefixCache:
    """States after token prefixes, reused by `forward` (see the module docstring).

    Args:
        model: the Model whose states are cached.
        max_bytes: memory budget for the cached states, logits and keys (default 256 MiB).
        min_tokens: shared prefixes shorter than this are not worth an entry of their own (default 16).
    """

    def __init__(self, model, max_bytes: int = 256 << 20, min_tokens: int = 16):
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise RwkvArgumentError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        if not isinstance(min_tokens, int) or min_tokens < 1:
            raise RwkvArgumentError(f"min_tokens must be an int >= 1, got {min_tokens!r}")
        self.model = model
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self._entries: "collections.OrderedDict[bytes, _Entry]" = collections.OrderedDict()   # LRU first
        self.nbytes = 0
        self.stats = {"requests": 0, "hits": 0, "tokens_reused": 0, "tokens_evaluated": 0, "evictions": 0}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    # ---- lookup -------------------------------------------------------------------------------------------------
    def _match(self, toks: np.ndarray) -> Tuple[Optional[_Entry], int]:
        """(the entry whose key is the longest prefix of toks, or None; the longest common prefix of toks with
        any key)."""
        best, best_len, shared = None, 0, 0
        for entry in self._entries.values():
            key = entry.key
            m = min(key.size, toks.size)
            diff = np.flatnonzero(key[:m] != toks[:m])
            common = int(diff[0]) if diff.size else m
            shared = max(shared, common)
            if common == key.size and key.size > best_len:
                best, best_len = entry, key.size
        return best, shared

    def lookup(self, tokens: Sequence[int]):
        """(n, state, logits) for the longest cached prefix of tokens: n tokens, a copy of the state after them
        and the logits there; (0, None, None) when nothing matches."""
        toks = np.asarray(tokens, dtype=np.int32).reshape(-1)
        entry, _ = self._match(toks)
        if entry is None:
            return 0, None, None
        self._entries.move_to_end(entry.key.tobytes())
        return entry.key.size, entry.state.copy(), entry.logits.copy()

    # ---- evaluation -----------------------------------------------------------------------------------------
    def forward(self, tokens: Sequence[int]):
        """Like model.forward(tokens) from an empty state: (logits [n_vocab], a new state), reading only the
        tokens after the longest cached prefix, and caching what later requests may reuse."""
        from .model import _as_tokens
        toks = _as_tokens(tokens, self.model.n_vocab)
        self.stats["requests"] += 1
        entry, shared = self._match(toks)
        done = 0
        if entry is not None:
            self._entries.move_to_end(entry.key.tobytes())
            done, state, logits = entry.key.size, entry.state.copy(), entry.logits.copy()
            self.stats["hits"] += 1
            self.stats["tokens_reused"] += done
        else:
            state, logits = self.model.new_state(), None
        # a prefix shared with a cached sequence, longer than the one we start from: cache the state there
        if shared > done and shared >= self.min_tokens and shared < toks.size:
            logits, state = self.model.forward(toks[done:shared], state)
            self.stats["tokens_evaluated"] += shared - done
            done = shared
            self._add(toks[:shared], state, logits)
        if done < toks.size:
            logits, state = self.model.forward(toks[done:], state)
            self.stats["tokens_evaluated"] += toks.size - done
            self._add(toks, state, logits)
        return logits, state

    def add(self, tokens: Sequence[int], state, logits: np.ndarray) -> None:
        """Cache a state the caller computed: the state after reading `tokens` from an empty state, and the
        logits there. (Copies both.)"""
        from .model import _as_tokens
        self.model._check_state(state)
        logits = np.asarray(logits, dtype=np.float32).reshape(-1)
        if logits.size != self.model.n_vocab:
            raise RwkvArgumentError(f"logits of size {logits.size}, expected n_vocab {self.model.n_vocab}")
        self._add(_as_tokens(tokens, self.model.n_vocab), state, logits)

    def _add(self, toks: np.ndarray, state, logits: np.ndarray) -> None:
        key = toks.astype(np.int32, copy=True)
        k = key.tobytes()
        old = self._entries.pop(k, None)
        if old is not None:
            self.nbytes -= old.nbytes
        entry = _Entry(key, state.copy(), np.array(logits, dtype=np.float32, copy=True))
        if entry.nbytes > self.max_bytes:
            return
        self._entries[k] = entry
        self.nbytes += entry.nbytes
        while self.nbytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= evicted.nbytes
            self.stats["evictions"] += 1

    def __repr__(self) -> str:
        return (f"<rwkv_cpu.PrefixCache {len(self)} entries, {self.nbytes / 2**20:.1f} of "
                f"{self.max_bytes / 2**20:.1f} MiB>")


__all__ = ["PrefixCache"]
