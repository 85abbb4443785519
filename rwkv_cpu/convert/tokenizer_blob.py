"""Chooses the tokenizer a converted model carries, and loads its blob (docs/FILE_FORMAT.md).

Without `--tokenizer`, the vocabulary size decides (as rwkv.cpp does): 65536 rows is RWKV World (the vocab
text found next to the checkpoint, else the copy shipped in `rwkv_cpu/data/`), 50277 rows is the GPT-NeoX
20B tokenizer of the RWKV-4 Pile and Raven models (`20B_tokenizer.json`, shipped in `rwkv_cpu/data/`),
256 rows is the byte-level tokenizer, and anything else must be told. `--tokenizer` takes `world`, `20b`,
`bytes`, `none` (no tokenizer: the model is driven with token ids), or a path: a `.json` file is a Hugging
Face `tokenizers` file, anything else a World-format vocab text. A blob is checked before it is embedded: it must parse, and its largest token
id must fit the model's vocabulary.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import List, Optional

from ..errors import ModelFormatError, RwkvArgumentError, RwkvIOError

WORLD_VOCAB_NAME = "rwkv_vocab_v20230424.txt"
WORLD_N_VOCAB = 65536
NEOX_20B_NAME = "20B_tokenizer.json"
NEOX_20B_N_VOCAB = 50277
BYTES_N_VOCAB = 256
MAX_TOKENIZER_BYTES = 64 << 20

KIND_NONE, KIND_WORLD, KIND_HF_JSON, KIND_BYTES = 0, 1, 2, 3
KIND_NAMES = {KIND_NONE: "none", KIND_WORLD: "world", KIND_HF_JSON: "hf-json", KIND_BYTES: "bytes"}

_WORLD_LINE = re.compile(rb"^(\d+) (.+) (\d+)$")


@dataclass(frozen=True)
class TokenizerBlob:
    kind: int  # KIND_*
    data: bytes  # the blob stored in the file
    description: str  # for metadata and messages, e.g. "world (rwkv_vocab_v20230424.txt)"


def package_world_vocab() -> str:
    """Where the package keeps its copy of the World vocab."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", WORLD_VOCAB_NAME)


def package_20b_tokenizer() -> str:
    """Where the package keeps its copy of the GPT-NeoX 20B tokenizer."""
    return os.path.join(os.path.dirname(package_world_vocab()), NEOX_20B_NAME)


def find_world_vocab(search_dirs: List[str]) -> Optional[str]:
    """The World vocab next to the checkpoint, else the package's copy, else None."""
    for d in search_dirs:
        cand = os.path.join(d, WORLD_VOCAB_NAME)
        if os.path.isfile(cand):
            return cand
    cand = package_world_vocab()
    return cand if os.path.isfile(cand) else None


def choose_tokenizer(spec: Optional[str], n_vocab: int, search_dirs: List[str]) -> TokenizerBlob:
    """The tokenizer for a model with `n_vocab` rows; `spec` is the --tokenizer value (None: decide)."""
    if spec is None:
        if n_vocab == WORLD_N_VOCAB:
            spec = "world"
        elif n_vocab == NEOX_20B_N_VOCAB:
            spec = "20b"
        elif n_vocab == BYTES_N_VOCAB:
            spec = "bytes"
        else:
            raise RwkvArgumentError(
                f"the model has {n_vocab} tokens, which names no default tokenizer: pass --tokenizer with "
                "world, 20b, bytes, none, or the path of a vocab .txt or tokenizers .json file")
    if spec == "none":
        return TokenizerBlob(KIND_NONE, b"", "none")
    if spec == "bytes":
        if n_vocab < BYTES_N_VOCAB:
            raise RwkvArgumentError(f"the byte tokenizer needs 256 tokens; the model has {n_vocab}")
        return TokenizerBlob(KIND_BYTES, b"", "bytes")
    if spec == "world":
        path = find_world_vocab(search_dirs)
        if path is None:
            raise RwkvArgumentError(
                f"the RWKV World vocab ({WORLD_VOCAB_NAME}) is neither next to the checkpoint nor in the "
                f"package ({package_world_vocab()}): pass --tokenizer PATH to it, or --tokenizer none")
        return load_tokenizer_file(path, n_vocab)
    if spec == "20b":
        path = package_20b_tokenizer()
        if not os.path.isfile(path):
            raise RwkvArgumentError(f"the GPT-NeoX 20B tokenizer ({NEOX_20B_NAME}) is missing from the package "
                                    f"({path}): pass --tokenizer PATH to it, or --tokenizer none")
        return load_tokenizer_file(path, n_vocab)
    return load_tokenizer_file(spec, n_vocab)


def load_tokenizer_file(path: str, n_vocab: int) -> TokenizerBlob:
    """A `.json` tokenizers file or a World vocab text, read and checked against n_vocab."""
    data = _read_capped(path)
    name = os.path.basename(path)
    if path.lower().endswith(".json"):
        _check_hf_json(data, n_vocab, path)
        return TokenizerBlob(KIND_HF_JSON, data, f"hf-json ({name})")
    _check_world_vocab(data, n_vocab, path)
    return TokenizerBlob(KIND_WORLD, data, f"world ({name})")


def _read_capped(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKENIZER_BYTES + 1)
    except OSError as e:
        raise RwkvIOError(f"cannot read tokenizer {path}: {e.strerror or e}") from e
    if len(data) > MAX_TOKENIZER_BYTES:
        raise ModelFormatError(f"tokenizer {path} exceeds {MAX_TOKENIZER_BYTES} bytes")
    if not data:
        raise ModelFormatError(f"tokenizer {path} is empty")
    return data


def _check_world_vocab(data: bytes, n_vocab: int, path: str) -> None:
    """Lines `<id> <python literal> <byte length>`: ids increasing and below n_vocab. The literal itself
    is parsed by the C tokenizer when the model is loaded; here only the frame of each line is checked."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFormatError(f"{path}: a World vocab must be UTF-8 text") from None
    last = 0
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        m = _WORLD_LINE.match(line)
        if not m or m.group(2)[:1] not in (b"'", b'"', b"b"):
            raise ModelFormatError(f"{path}:{lineno}: not a World vocab line (<id> <literal> <length>)")
        token_id = int(m.group(1))
        if token_id <= last:
            raise ModelFormatError(f"{path}:{lineno}: token id {token_id} is not above the previous one")
        if token_id >= n_vocab:
            raise ModelFormatError(f"{path}:{lineno}: token id {token_id} does not fit the model's "
                                   f"{n_vocab} tokens")
        last = token_id
    if last == 0:
        raise ModelFormatError(f"{path}: no tokens")


def _check_hf_json(data: bytes, n_vocab: int, path: str) -> None:
    """Parse with the `tokenizers` library; its vocabulary (with added tokens) must fit n_vocab."""
    try:
        from tokenizers import Tokenizer
    except ImportError:  # still refuse what is not JSON
        try:
            json.loads(data)
        except ValueError as e:
            raise ModelFormatError(f"{path}: not JSON: {e}") from None
        return
    try:
        size = Tokenizer.from_str(data.decode("utf-8")).get_vocab_size(with_added_tokens=True)
    except Exception as e:  # tokenizers raises plain Exception subclasses of its own
        raise ModelFormatError(f"{path}: not a tokenizers JSON file: {str(e)[:200]}") from None
    if size > n_vocab:
        raise ModelFormatError(f"{path}: the tokenizer has {size} tokens, more than the model's {n_vocab}")
