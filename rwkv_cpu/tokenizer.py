"""Tokenizers for RWKV models: text <-> token ids.

Three kinds, one interface:

* ``world``: the RWKV World tokenizer (``rwkv_vocab_v20230424.txt``, every v5/v6/v7 World model): greedy
  longest match over UTF-8 bytes, run by the C library.
* ``bytes``: token id = byte value (vocab 256), used by the tiny byte-level test models; C library too.
* ``hf``: a byte-level BPE Hugging Face ``tokenizers`` JSON file (GPT-NeoX 20B, used by RWKV-4 Pile/Raven),
  run by the ``tokenizers`` package.

Every kind maps a token to exact bytes (``token_bytes``), so decoding concatenates bytes and then decodes
UTF-8; a token may hold part of a character (the World tokenizer splits 🙂 into [3319, 2417]), which is why
``stream_decoder()`` exists for printing tokens as they are generated.

Example::

    tok = Tokenizer.world()
    ids = tok.encode("Hello, world!")       # [33155, 45, 40213, 34]
    tok.decode(ids)                          # 'Hello, world!'
"""
from __future__ import annotations

import codecs
import json
import operator
import os
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from ._ffi import check, ffi, lib
from .errors import ModelFormatError, TokenError, UnsupportedModelError

WORLD_VOCAB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "rwkv_vocab_v20230424.txt")

# Tokenizer kinds as stored in .rwkv files (RWKV_TOKENIZER_* in rwkv_cpu.h).
KIND_NONE, KIND_WORLD, KIND_HF_JSON, KIND_BYTES = 0, 1, 2, 3

_RWKV_ERR_BUFFER = 8
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

Text = Union[str, bytes, bytearray, memoryview]
Ids = Union[Sequence[int], np.ndarray]


class Tokenizer:
    """Encodes text to token ids and decodes ids back. Create one with a class method: ``Tokenizer.world()``,
    ``Tokenizer.bytes()`` or ``Tokenizer.from_hf_json(text)``. Immutable; safe to share between threads."""

    def __init__(self, kind: str, handle=None, hf=None, hf_token_bytes=None, hf_special=frozenset()) -> None:
        """Private: use the class methods."""
        self._kind = kind
        self._handle = handle                  # rwkv_tokenizer * (world, bytes), freed by ffi.gc
        self._hf = hf                          # tokenizers.Tokenizer (hf)
        self._hf_token_bytes: List[Optional[bytes]] = hf_token_bytes or []   # id -> bytes; None where no token
        self._hf_special = hf_special          # ids of special tokens, which decode to nothing

    # ---- construction --------------------------------------------------------------------------------------
    @classmethod
    def world(cls, path: Optional[Union[str, os.PathLike]] = None) -> "Tokenizer":
        """The RWKV World tokenizer, from a vocab text file (default: the one shipped with the package)."""
        path = WORLD_VOCAB_PATH if path is None else os.fspath(path)
        with open(path, "rb") as f:
            text = f.read()
        return cls._world_from_text(text, f"World vocab {path}")

    @classmethod
    def bytes(cls) -> "Tokenizer":
        """The byte tokenizer: token id = byte value, vocab size 256."""
        out = ffi.new("rwkv_tokenizer **")
        check(lib.rwkv_tokenizer_new_bytes(out), "byte tokenizer")
        return cls("bytes", handle=ffi.gc(out[0], lib.rwkv_tokenizer_free))

    @classmethod
    def from_hf_json(cls, json_text: Union[str, bytes]) -> "Tokenizer":
        """A Hugging Face ``tokenizers`` JSON (e.g. GPT-NeoX's ``20B_tokenizer.json``), given as its text.

        Only byte-level BPE tokenizers (``"decoder": {"type": "ByteLevel"}``) are supported, since their tokens
        map to exact bytes. Encoding adds no special tokens. Decoding drops special tokens (such as 20B's
        ``<|endoftext|>``, id 0), as ``tokenizers`` does by default; ``token_bytes`` still gives their text."""
        import tokenizers

        if isinstance(json_text, (bytes, bytearray)):
            try:
                json_text = bytes(json_text).decode("utf-8")
            except UnicodeDecodeError as e:
                raise ModelFormatError(f"Hugging Face tokenizer JSON is not UTF-8: {e}") from None
        try:
            spec = json.loads(json_text)
            hf = tokenizers.Tokenizer.from_str(json_text)
        except Exception as e:  # json.JSONDecodeError, RecursionError, or the Rust exception tokenizers raises
            raise ModelFormatError(f"invalid Hugging Face tokenizer JSON: {e}") from None
        except BaseException as e:  # a Rust panic inside tokenizers: pyo3's PanicException is a BaseException
            if type(e).__name__ != "PanicException":
                raise
            raise ModelFormatError(f"invalid Hugging Face tokenizer JSON (tokenizers panicked: {e})") from None
        decoder = spec.get("decoder") if isinstance(spec, dict) else None
        decoder_type = decoder.get("type") if isinstance(decoder, dict) else None
        if decoder_type != "ByteLevel":
            raise UnsupportedModelError(
                "only byte-level BPE Hugging Face tokenizers (decoder ByteLevel, e.g. GPT-NeoX 20B) are supported; "
                f"this one's decoder is {decoder_type!r}")
        special = frozenset(t["id"] for t in spec.get("added_tokens") or () if t.get("special"))
        return cls("hf", hf=hf, hf_token_bytes=_byte_level_table(hf), hf_special=special)

    @classmethod
    def _from_blob(cls, kind: int, blob: Union[bytes, memoryview]) -> "Tokenizer":
        """The tokenizer embedded in a .rwkv model file: its tokenizer kind (KIND_*) and blob."""
        if kind == KIND_WORLD:
            return cls._world_from_text(bytes(blob), "the model's World vocab")
        if kind == KIND_HF_JSON:
            return cls.from_hf_json(bytes(blob))
        if kind == KIND_BYTES:
            return cls.bytes()
        if kind == KIND_NONE:
            raise UnsupportedModelError(
                "the model file has no tokenizer; create one explicitly, e.g. Tokenizer.world()")
        raise UnsupportedModelError(f"unknown tokenizer kind {kind} in the model file")

    @classmethod
    def _world_from_text(cls, text: bytes, what: str) -> "Tokenizer":
        out = ffi.new("rwkv_tokenizer **")
        check(lib.rwkv_tokenizer_new_world(ffi.from_buffer(text), len(text), out), what)
        return cls("world", handle=ffi.gc(out[0], lib.rwkv_tokenizer_free))

    # ---- properties -----------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """"world", "bytes" or "hf"."""
        return self._kind

    @property
    def vocab_size(self) -> int:
        """Largest token id + 1 (65530 for World; a World model's head has 65536 rows)."""
        if self._hf is not None:
            return len(self._hf_token_bytes)
        return int(lib.rwkv_tokenizer_vocab_size(self._handle))

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self._kind!r}, vocab_size={self.vocab_size})"

    # ---- encoding -------------------------------------------------------------------------------------------
    def encode(self, text: Text) -> List[int]:
        """Token ids of a text: a str (encoded as UTF-8) or raw bytes (world and bytes kinds: any bytes)."""
        if self._hf is not None:
            return self._hf.encode(_as_str(text), add_special_tokens=False).ids
        return self.encode_np(text).tolist()

    def encode_np(self, text: Text) -> np.ndarray:
        """Like encode, as an int32 numpy array."""
        if self._hf is not None:
            return np.asarray(self.encode(text), dtype=np.int32)
        data = _as_bytes(text)
        out = np.empty(len(data), dtype=np.int32)    # every token is at least one byte, so this is enough
        n = ffi.new("uint64_t *")
        check(lib.rwkv_tokenizer_encode(self._handle, ffi.from_buffer(data), len(data),
                                        ffi.from_buffer("int32_t[]", out), len(out), n), "encode")
        return out[: n[0]]

    # ---- decoding -------------------------------------------------------------------------------------------
    def decode(self, ids: Ids) -> str:
        """The text of token ids; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Ids) -> bytes:
        """The concatenated bytes of token ids. End of text (World id 0) and special tokens (hf) give nothing."""
        if self._hf is not None:
            return b"".join(self._hf_piece(i) for i in _hf_ids(ids))
        arr = _as_id_array(ids)
        if arr.size == 0:
            return b""
        ids_c = ffi.from_buffer("int32_t[]", arr)
        n = ffi.new("uint64_t *")
        buf = bytearray(8 * arr.size)              # World tokens average ~4 bytes; retried if too small
        st = lib.rwkv_tokenizer_decode(self._handle, ids_c, arr.size, ffi.from_buffer(buf), len(buf), n)
        if st == _RWKV_ERR_BUFFER:
            buf = bytearray(n[0])
            st = lib.rwkv_tokenizer_decode(self._handle, ids_c, arr.size, ffi.from_buffer(buf), len(buf), n)
        check(st, "decode")
        return bytes(memoryview(buf)[: n[0]])

    def token_bytes(self, id: int) -> bytes:
        """The bytes of one token (raises TokenError for an id that is not a token, such as World's 0)."""
        id = operator.index(id)
        if self._hf is not None:
            if 0 <= id < len(self._hf_token_bytes) and self._hf_token_bytes[id] is not None:
                return self._hf_token_bytes[id]
            raise TokenError(f"token id {id} is not in the vocabulary (size {self.vocab_size})")
        if not _INT32_MIN <= id <= _INT32_MAX:
            raise TokenError(f"token id {id} is not in the vocabulary (size {self.vocab_size})")
        p = ffi.new("const uint8_t **")
        n = ffi.new("uint64_t *")
        check(lib.rwkv_tokenizer_token_bytes(self._handle, id, p, n), "token_bytes")
        return ffi.buffer(p[0], n[0])[:]

    def stream_decoder(self) -> "StreamDecoder":
        """A decoder for ids that arrive one by one (generation), which never emits part of a character."""
        return StreamDecoder(self)

    def _hf_piece(self, id: int) -> bytes:
        if id in self._hf_special:
            return b""
        if 0 <= id < len(self._hf_token_bytes) and self._hf_token_bytes[id] is not None:
            return self._hf_token_bytes[id]
        raise TokenError(f"token id {id} is not in the vocabulary (size {self.vocab_size})")


class StreamDecoder:
    """Turns token ids into text as they arrive. A character split across tokens is held back until it is
    complete, so ``feed`` never returns a partial character; bytes that can never form a valid character come
    out as U+FFFD at once. ``flush()`` ends the stream (an incomplete tail becomes U+FFFD) and resets it."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids: Union[int, Ids]) -> str:
        """Add one id or several; returns the text that is now complete (possibly "")."""
        if isinstance(ids, (int, np.integer)):
            ids = [int(ids)]
        return self._utf8.decode(self._tokenizer.decode_bytes(ids))

    def flush(self) -> str:
        """The held-back tail (U+FFFD if it is an incomplete character); the decoder is then empty again."""
        return self._utf8.decode(b"", final=True)


# ---- helpers -------------------------------------------------------------------------------------------------
def _as_bytes(text: Text) -> bytes:
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def _as_str(text: Text) -> str:
    if isinstance(text, str):
        return text
    return _as_bytes(text).decode("utf-8")   # byte-level BPE takes text: invalid UTF-8 raises UnicodeDecodeError


def _as_id_array(ids: Ids) -> np.ndarray:
    """ids as a contiguous int32 array; ids outside int32 raise TokenError (the C side reports the others)."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise TypeError(f"expected a sequence of token ids, got an array of shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int32)
    if arr.dtype.kind == "O" and all(isinstance(i, (int, np.integer)) for i in arr):   # e.g. ints beyond int64
        bad = [int(i) for i in arr if not _INT32_MIN <= i <= _INT32_MAX]
        if bad:
            raise TokenError(f"token id {bad[0]} is not in the vocabulary")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < _INT32_MIN or hi > _INT32_MAX:
        raise TokenError(f"token id {lo if lo < _INT32_MIN else hi} is not in the vocabulary")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _hf_ids(ids: Ids) -> Iterable[int]:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise TypeError(f"expected a sequence of token ids, got an array of shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iuO":
        raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
    return (operator.index(i) for i in arr.tolist())


def _bytes_to_unicode() -> dict:
    """GPT-2's byte -> character map of byte-level BPE: printable bytes map to themselves, the others to
    characters from U+0100 up, so that every token is a printable string."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _byte_level_table(hf) -> List[Optional[bytes]]:
    """id -> bytes for a byte-level tokenizer, as its ByteLevel decoder maps each token: through the inverse of
    bytes_to_unicode, or, for a token with a character outside that alphabet (an added token such as a run of
    plain spaces), its UTF-8 text. Built once per tokenizer (one pass over the vocab)."""
    char_to_byte = {c: b for b, c in _bytes_to_unicode().items()}
    vocab = hf.get_vocab(with_added_tokens=True)
    top = max(vocab.values(), default=-1)
    if top >= 2 * len(vocab) + 1024:   # the table is indexed by id: a lone huge id must not size it (untrusted)
        raise ModelFormatError(f"Hugging Face tokenizer: token ids reach {top} for {len(vocab)} tokens; ids must "
                               "be (nearly) contiguous")
    table: List[Optional[bytes]] = [None] * (top + 1)
    for token, id in vocab.items():
        try:
            table[id] = bytes(char_to_byte[c] for c in token)
        except KeyError:
            table[id] = token.encode("utf-8")
    return table


__all__ = ["Tokenizer", "StreamDecoder", "WORLD_VOCAB_PATH",
           "KIND_NONE", "KIND_WORLD", "KIND_HF_JSON", "KIND_BYTES"]
