"""Exceptions raised by rwkv_cpu. Every error names the problem; all derive from RwkvError."""
from __future__ import annotations


class RwkvError(Exception):
    """Base class of every rwkv_cpu error."""


class ModelFormatError(RwkvError, ValueError):
    """A model or checkpoint file is malformed, truncated or inconsistent."""


class UnsupportedModelError(RwkvError, ValueError):
    """A valid file of an architecture, version or type this build does not support."""


class UnsafePickleError(RwkvError, ValueError):
    """A pickle asked for something other than tensors and plain containers (it was not executed)."""


class TokenError(RwkvError, ValueError):
    """A token id outside [0, n_vocab)."""


class StateMismatchError(RwkvError, ValueError):
    """A state that belongs to a model of another architecture or size."""


class RwkvIOError(RwkvError, OSError):
    """A file could not be opened, read, mapped or written."""


class RwkvArgumentError(RwkvError, ValueError):
    """An invalid argument (bad value, wrong length, out of range)."""


class RwkvMemoryError(RwkvError, MemoryError):
    """An allocation failed."""


# rwkv_status codes (csrc/include/rwkv_cpu.h) -> exception classes
_BY_STATUS = {
    1: RwkvIOError,
    2: ModelFormatError,
    3: UnsupportedModelError,
    4: RwkvArgumentError,
    5: RwkvMemoryError,
    6: TokenError,
    7: StateMismatchError,
    8: RwkvError,
}


def error_for_status(status: int, message: str) -> RwkvError:
    return _BY_STATUS.get(status, RwkvError)(message)
