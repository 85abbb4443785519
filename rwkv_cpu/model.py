"""Model and State: the Python face of the C library.

    >>> import rwkv_cpu
    >>> model = rwkv_cpu.Model()                      # the bundled tiny model; or Model("eagle-7b-q4.rwkv")
    >>> logits, state = model.forward(model.tokenizer.encode("Hello"))
    >>> logits.shape == (model.n_vocab,)
    True

`forward` advances the state it is given *in place* and returns it (as the official rwkv package does);
pass `state.copy()` to keep the old one. Every array crosses the boundary as numpy float32 / int32.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from ._ffi import check, ffi, lib
from .errors import ModelFormatError, RwkvArgumentError, RwkvIOError, StateMismatchError, TokenError

PathLike = Union[str, "os.PathLike[str]"]
Tokens = Union[int, Sequence[int], np.ndarray]

_ARCH_NAMES = {40: "v4", 50: "v5.0", 51: "v5.1", 52: "v5.2", 60: "v6", 70: "v7"}
_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
BUNDLED_MODEL = os.path.join(_DATA_DIR, "tiny-5v2-730K.rwkv")


def _cstr(p) -> str:
    return ffi.string(p).decode("utf-8", "replace")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a model file."""
    name: str
    dtype: str
    shape: tuple
    nbytes: int


def _as_tokens(tokens: Tokens, n_vocab: int) -> np.ndarray:
    """Validate token ids and return them as a contiguous int32 array."""
    arr = np.asarray(tokens)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise RwkvArgumentError(f"tokens must be an int or a 1-D sequence of ints, got shape {arr.shape}")
    if arr.size == 0:
        raise RwkvArgumentError("no tokens given")
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == object or not np.all(np.equal(np.mod(arr, 1), 0)):
            raise RwkvArgumentError(f"token ids must be integers, got {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= n_vocab))
    if bad.size:
        i = int(bad[0])
        raise TokenError(f"token id {int(arr[i])} at position {i} is out of range [0, {n_vocab})")
    return np.ascontiguousarray(arr, dtype=np.int32)


_STATE_HEADER_SIZE = 64


def _meta_blob(meta: Optional[dict]) -> bytes:
    """The metadata block of a state file: a JSON object, tagged with the library version."""
    from . import __version__
    if meta is not None and not isinstance(meta, dict):
        raise RwkvArgumentError(f"state metadata must be a dict, got {type(meta).__name__}")
    try:
        blob = json.dumps({"rwkv_cpu": __version__, **(meta or {})}, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise RwkvArgumentError(f"state metadata must be JSON-serialisable: {e}") from None
    if len(blob) > lib.RWKV_STATE_META_MAX:
        raise RwkvArgumentError(f"state metadata of {len(blob)} bytes is over the {lib.RWKV_STATE_META_MAX}-byte limit")
    return blob


def _parse_meta(blob: bytes) -> dict:
    """A state file's metadata as a dict; {} for anything else (it is untrusted: invalid UTF-8 or JSON, JSON
    nested deeper than the parser's recursion limit)."""
    try:
        meta = json.loads(blob.decode("utf-8")) if blob else {}
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


_STATE_FILE_READ_CAP = 1 << 30


def read_state_header(path: PathLike) -> dict:
    """The header and metadata of a state file, checked whole (size, CRC) by the C reader; no model needed."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_STATE_FILE_READ_CAP + 1)
    except OSError as e:
        raise RwkvIOError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > _STATE_FILE_READ_CAP:
        raise ModelFormatError(f"{path}: over {_STATE_FILE_READ_CAP >> 20} MiB, too large for a state file")
    hdr = ffi.new("rwkv_state_header *")
    check(lib.rwkv_state_file_info(ffi.from_buffer(data), len(data), hdr), path)
    out = {k: int(getattr(hdr, k)) for k in ("version", "arch", "n_layer", "n_embd", "dim_att", "n_head",
                                               "head_size", "n_ffn", "n_vocab", "n_floats")}
    out["arch"] = _ARCH_NAMES.get(out["arch"], f"unknown({out['arch']})")
    out["meta"] = _parse_meta(data[hdr.meta_offset:hdr.meta_offset + hdr.meta_size])
    out["file_size"] = len(data)
    return out


class State:
    """The recurrent state of one sequence: a flat float32 vector laid out as docs/FILE_FORMAT.md says.

    A state is bound to a model's architecture and dimensions, not to one Model object: a state made by
    the f16 file of a model can continue on its q4 file. A state must not be used by two threads at once.
    """

    def __init__(self, model: "Model"):
        out = ffi.new("rwkv_state **")
        check(lib.rwkv_state_new(model._handle, out), "creating a state")
        self._handle = ffi.gc(out[0], lib.rwkv_state_free)
        self._size = int(lib.rwkv_state_size(self._handle))
        self._layout = model._state_layout()
        self.arch = model.arch
        self.meta: dict = {}    # the metadata of the state file it was loaded from (State.save's `meta`)

    @property
    def size(self) -> int:
        """Number of floats."""
        return self._size

    def _view(self) -> np.ndarray:
        buf = ffi.buffer(lib.rwkv_state_data(self._handle), self._size * 4)
        return np.frombuffer(buf, dtype=np.float32)

    def to_numpy(self) -> np.ndarray:
        """A copy of the state as a flat float32 array."""
        return self._view().copy()

    def load_numpy(self, values: np.ndarray) -> "State":
        """Overwrite the state with a flat float32 array of the same size (e.g. from to_numpy)."""
        arr = np.asarray(values, dtype=np.float32).reshape(-1)
        if arr.size != self._size:
            raise StateMismatchError(f"state has {self._size} floats, the array has {arr.size}")
        self._view()[:] = arr
        return self

    def to_dict(self) -> dict:
        """Per-layer arrays named like the fixtures' state.npz: 'blocks.{i}.att_kv' etc. (copies)."""
        flat = self._view()
        out = {}
        per_layer = sum(int(np.prod(shape)) for _, shape in self._layout)
        for layer in range(self._size // per_layer):
            off = layer * per_layer
            for name, shape in self._layout:
                n = int(np.prod(shape))
                out[f"blocks.{layer}.{name}"] = flat[off:off + n].reshape(shape).copy()
                off += n
        return out

    @classmethod
    def _wrap(cls, handle, size: int, layout: list, arch: str, meta: Optional[dict] = None) -> "State":
        """A State object owning a new C handle."""
        new = cls.__new__(cls)
        new._handle = ffi.gc(handle, lib.rwkv_state_free)
        new._size, new._layout, new.arch = size, layout, arch
        new.meta = dict(meta or {})
        return new

    def copy(self) -> "State":
        """An independent copy."""
        out = ffi.new("rwkv_state **")
        check(lib.rwkv_state_clone(self._handle, out), "copying a state")
        return self._wrap(out[0], self._size, self._layout, self.arch, self.meta)

    # ---- state files (docs/FILE_FORMAT.md "State file") -------------------------------------------------
    def to_bytes(self, meta: Optional[dict] = None) -> bytes:
        """The state as a state file image: a header naming the model's architecture and dimensions, `meta`
        (a JSON-serialisable dict, e.g. the conversation's token count) and the floats, CRC-checked."""
        blob = _meta_blob(meta)
        n = ffi.new("uint64_t *")
        lib.rwkv_state_serialize(self._handle, blob, len(blob), ffi.NULL, 0, n)   # size query (RWKV_ERR_BUFFER)
        buf = bytearray(int(n[0]))
        check(lib.rwkv_state_serialize(self._handle, blob or ffi.NULL, len(blob), ffi.from_buffer(buf), len(buf), n),
              "serialising a state")
        return bytes(buf)

    def save(self, path: PathLike, meta: Optional[dict] = None) -> None:
        """Write the state to a file, atomically (a temp file beside it, fsync, rename): an interrupted or
        failed save leaves any old file at `path` as it was. Load it with Model.load_state(path)."""
        blob = _meta_blob(meta)
        check(lib.rwkv_state_save(self._handle, blob or ffi.NULL, len(blob), os.fsencode(os.fspath(path))),
              "saving a state")

    def reset(self) -> "State":
        """Back to the state of an empty sequence."""
        check(lib.rwkv_state_reset(self._handle))
        return self

    def __repr__(self) -> str:
        return f"<rwkv_cpu.State {self.arch} {self._size} floats>"


class Model:
    """A model loaded from a .rwkv file (memory-mapped; the weights are used in place).

    Args:
        path: the .rwkv file; None loads the tiny model bundled with the package.
        n_threads: threads for evaluation; None or 0 means the number of physical cores.

    One Model may be shared by several threads; their evaluations take turns on its thread pool (each
    call uses all of the model's threads), and the GIL is released while C runs. Give each thread its own
    State.
    """

    def __init__(self, path: Optional[PathLike] = None, n_threads: Optional[int] = None):
        self.path = os.fspath(path) if path is not None else BUNDLED_MODEL
        if n_threads is not None and (not isinstance(n_threads, (int, np.integer)) or n_threads < 0):
            raise RwkvArgumentError(f"n_threads must be a non-negative int, got {n_threads!r}")
        out = ffi.new("rwkv_model **")
        check(lib.rwkv_model_load(self.path.encode(), int(n_threads or 0), out))
        self._handle = ffi.gc(out[0], lib.rwkv_model_free)
        info = ffi.new("rwkv_model_info *")
        check(lib.rwkv_model_get_info(self._handle, info))
        self._info = info
        self._tokenizer = None

    # ---- dimensions ------------------------------------------------------------------------------
    @property
    def arch(self) -> str:
        return _ARCH_NAMES.get(self._info.arch, f"unknown({self._info.arch})")

    n_layer = property(lambda self: int(self._info.n_layer))
    n_embd = property(lambda self: int(self._info.n_embd))
    dim_att = property(lambda self: int(self._info.dim_att))
    n_head = property(lambda self: int(self._info.n_head))
    head_size = property(lambda self: int(self._info.head_size))
    n_ffn = property(lambda self: int(self._info.n_ffn))
    n_vocab = property(lambda self: int(self._info.n_vocab))
    n_params = property(lambda self: int(self._info.n_params))
    file_size = property(lambda self: int(self._info.file_size))
    state_size = property(lambda self: int(self._info.state_size))

    @property
    def n_threads(self) -> int:
        return int(self._info.n_threads)

    @n_threads.setter
    def n_threads(self, n: int) -> None:
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise RwkvArgumentError(f"n_threads must be a non-negative int, got {n!r}")
        check(lib.rwkv_model_set_threads(self._handle, int(n)))
        check(lib.rwkv_model_get_info(self._handle, self._info))

    def tensors(self) -> list:
        """The tensors of the file, in file order."""
        out = []
        ti = ffi.new("rwkv_tensor_info *")
        for i in range(int(self._info.n_tensors)):
            check(lib.rwkv_model_tensor_info(self._handle, i, ti))
            out.append(TensorInfo(_cstr(ti.name), _cstr(lib.rwkv_dtype_name(ti.dtype)),
                                  tuple(int(ti.shape[d]) for d in range(ti.n_dims)), int(ti.nbytes)))
        return out

    @property
    def metadata(self) -> dict:
        """The converter's metadata (source, dtype, converter version, ...)."""
        data, size = ffi.new("const uint8_t **"), ffi.new("uint64_t *")
        check(lib.rwkv_model_metadata(self._handle, data, size))
        raw = bytes(ffi.buffer(data[0], size[0])) if size[0] else b""
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}

    @property
    def tokenizer(self):
        """The tokenizer embedded in the model file."""
        if self._tokenizer is None:
            from .tokenizer import Tokenizer
            kind, data, size = ffi.new("uint32_t *"), ffi.new("const uint8_t **"), ffi.new("uint64_t *")
            check(lib.rwkv_model_tokenizer_blob(self._handle, kind, data, size))
            blob = bytes(ffi.buffer(data[0], size[0])) if size[0] else b""
            self._tokenizer = Tokenizer._from_blob(int(kind[0]), blob)
        return self._tokenizer

    # ---- state -------------------------------------------------------------------------------------
    def _state_layout(self) -> list:
        """(name, shape) of each entry of one layer's state, in order (docs/FILE_FORMAT.md, "State layout")."""
        C, A, H, N = self.n_embd, self.dim_att, self.n_head, self.head_size
        if self._info.arch == 40:  # v4: the overflow-safe WKV numerator, denominator and exponent
            return [("att_x_prev", (C,)), ("att_aa", (A,)), ("att_bb", (A,)), ("att_pp", (A,)),
                    ("ffn_x_prev", (C,))]
        if self._info.arch == 70:  # v7: S[h, value, key], transposed against v5/v6
            return [("att_x_prev", (C,)), ("att_vk", (H, N, N)), ("ffn_x_prev", (C,))]
        return [("att_x_prev", (C,)), ("att_kv", (H, N, N)), ("ffn_x_prev", (C,))]  # v5, v6: S[h, key, value]

    def new_state(self) -> State:
        """The state of an empty sequence."""
        return State(self)

    def load_state(self, path: PathLike) -> State:
        """A state saved by State.save. Raises StateMismatchError if it was saved from a model of another
        architecture or size, ModelFormatError if the file is damaged or truncated, RwkvIOError if it cannot
        be read. The file's metadata is in the returned state's `.meta`."""
        path = os.fspath(path)
        out = ffi.new("rwkv_state **")
        check(lib.rwkv_state_load(self._handle, os.fsencode(path), out), "loading a state")
        state = State._wrap(out[0], self.state_size, self._state_layout(), self.arch)
        try:   # the file has just been checked whole (size, CRC), so its header can be read plainly
            with open(path, "rb") as f:
                head = f.read(_STATE_HEADER_SIZE)
                meta_size = struct.unpack_from("<I", head, 56)[0]
                state.meta = _parse_meta(f.read(meta_size))
        except (OSError, struct.error):
            state.meta = {}
        return state

    def state_from_bytes(self, data: bytes) -> State:
        """A state from a state file image (State.to_bytes); refused like load_state."""
        data = bytes(data)
        out = ffi.new("rwkv_state **")
        check(lib.rwkv_state_deserialize(self._handle, ffi.from_buffer(data), len(data), out), "reading a state")
        state = State._wrap(out[0], self.state_size, self._state_layout(), self.arch)
        meta_size = struct.unpack_from("<I", data, 56)[0]           # the image was just checked whole
        state.meta = _parse_meta(data[_STATE_HEADER_SIZE:_STATE_HEADER_SIZE + meta_size])
        return state

    def _check_state(self, state: State) -> None:
        if not isinstance(state, State):
            raise RwkvArgumentError(f"expected a rwkv_cpu.State, got {type(state).__name__}")
        check(lib.rwkv_state_check(self._handle, state._handle))

    # ---- evaluation --------------------------------------------------------------------------------
    def forward(self, tokens: Tokens, state: Optional[State] = None, *, all_logits: bool = False):
        """Feed tokens of one sequence; return (logits, state).

        logits is float32 [n_vocab] after the last token, or [n_tokens, n_vocab] with all_logits=True.
        The state is advanced in place (a new one is made when None) and returned. On error the state
        is unchanged.
        """
        toks = _as_tokens(tokens, self.n_vocab)
        if state is None:
            state = self.new_state()
        else:
            self._check_state(state)
        n = toks.shape[0]
        logits = np.empty((n, self.n_vocab) if all_logits else (self.n_vocab,), dtype=np.float32)
        check(lib.rwkv_eval(self._handle, state._handle, ffi.from_buffer("int32_t[]", toks), n,
                            ffi.from_buffer("float[]", logits), 1 if all_logits else 0))
        return logits, state

    def forward_batch(self, tokens: Tokens, states: Sequence[State]) -> np.ndarray:
        """Advance several sequences by one token each, reading the weights once.

        tokens: [B] (token b goes to states[b]); returns logits [B, n_vocab]. States advance in place.
        """
        states = list(states)
        toks = _as_tokens(tokens, self.n_vocab)
        if len(states) != toks.shape[0]:
            raise RwkvArgumentError(f"{toks.shape[0]} tokens for {len(states)} states")
        for s in states:
            self._check_state(s)
        handles = ffi.new("rwkv_state *[]", [s._handle for s in states])
        logits = np.empty((len(states), self.n_vocab), dtype=np.float32)
        check(lib.rwkv_eval_batch(self._handle, handles, ffi.from_buffer("int32_t[]", toks), len(states),
                                  ffi.from_buffer("float[]", logits)))
        return logits

    def generate(self, prompt: Union[str, Sequence[int]], max_tokens: int = 100, *, stop=None,
                 stop_tokens: Optional[Iterable[int]] = None, state: Optional[State] = None, cache=None,
                 sampler=None, **sampling):
        """Stream text: returns a Generation, an iterator of text pieces as they are ready.

        Pieces never split a UTF-8 character and never contain a stop string (nor text after it).

        Args:
            prompt: text, or token ids.
            max_tokens: at most this many generated tokens.
            stop: a string or strings that end the generation (trimmed from the output).
            stop_tokens: ids that end it (not output, not read); default: end of text (id 0), none for byte models.
            state: continue from this state (advanced in place); default: an empty one.
            cache: a PrefixCache to take the prompt's longest cached prefix from (with no state).
            sampler: a rwkv_cpu.Sampler, or else the Sampler keyword arguments: temperature (default 1.0),
                top_p (default 0.85), top_k, min_p, repetition_penalty, repeat_last_n, presence_penalty,
                frequency_penalty, penalty_decay, logit_bias, banned_tokens, seed.

        After (or during) iteration the Generation holds text, tokens, stop_reason, state, logits and timings.
        """
        from .generation import Generation
        return Generation(self, prompt, max_tokens, stop=stop, stop_tokens=stop_tokens, state=state, cache=cache,
                          sampler=sampler, **sampling)

    def complete(self, prompt: Union[str, Sequence[int]], max_tokens: int = 100, *, callback=None, **kwargs):
        """Generate to the end (the callback form): callback(piece) is called for each piece as it is ready;
        returns the finished Generation (`.text`, `.tokens`, `.stop_reason`, `.state`, ...). Takes the
        arguments of generate()."""
        return self.generate(prompt, max_tokens, **kwargs).run(callback)

    def __repr__(self) -> str:
        return (f"<rwkv_cpu.Model {self.arch} L{self.n_layer} C{self.n_embd} V{self.n_vocab} "
                f"threads={self.n_threads} path={self.path!r}>")
