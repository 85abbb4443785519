"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/<target>/) from the test fixtures. Run from the
repository root with the package installed: python tests/fuzz/make_corpus.py

  model_file   one-layer models of every architecture (v4, v5.0, v5.1, v5.2, v6, v7; the tests/data fixtures
               converted, cut to their first layer and a small vocabulary), in f16/q8/q4, one with outlier columns, with the
               bytes, World (a small vocab) and no tokenizer
  state_file   state files of those models after a few tokens, with and without metadata
  vocab        small World vocab texts: the 256 byte tokens plus a few hundred real tokens; escapes of every
               kind; CRLF line ends
  tokenizer    texts (English, Chinese, emoji, invalid UTF-8, control bytes) and arrays of int32 ids
  py_*         the Python readers' seeds (tests/fuzz/fuzz_python.py): a real torch pickle and a hand-made one,
               small .pth archives (stored and deflated), .safetensors files, an index JSON, tokenizer blobs

Every file is small (the largest about 100 KB), so the fuzzers mutate them quickly.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
DATA = os.path.join(ROOT, "tests", "data")
VOCAB = os.path.join(ROOT, "rwkv_cpu", "data", "rwkv_vocab_v20230424.txt")

HEADER = struct.Struct("<8s12I8Q")
ENTRY = struct.Struct("<64sII4QQQQ")
TOK_NONE, TOK_WORLD, TOK_BYTES = 0, 1, 3
F32, F16 = 0, 1


def read_rwkv(path):
    """(header dict, [(name, dtype, shape, bytes)], tokenizer blob, metadata bytes) of a .rwkv file."""
    blob = open(path, "rb").read()
    f = HEADER.unpack_from(blob)
    keys = ["magic", "version", "header_size", "arch", "n_layer", "n_embd", "dim_att", "n_head", "head_size",
            "n_ffn", "n_vocab", "n_tensors", "tokenizer_kind", "table_offset", "tokenizer_offset",
            "tokenizer_size", "metadata_offset", "metadata_size", "data_offset", "data_size", "file_size"]
    h = dict(zip(keys, f))
    tensors = []
    for i in range(h["n_tensors"]):
        e = ENTRY.unpack_from(blob, 256 + 128 * i)
        start = h["data_offset"] + e[7]
        tensors.append((e[0].rstrip(b"\0").decode(), e[1], tuple(e[3:3 + e[2]]), blob[start:start + e[8]]))
    tok = blob[h["tokenizer_offset"]:h["tokenizer_offset"] + h["tokenizer_size"]]
    meta = blob[h["metadata_offset"]:h["metadata_offset"] + h["metadata_size"]]
    return h, tensors, tok, meta


def align(n):
    return (n + 63) // 64 * 64


def write_rwkv(path, h, tensors, tok_kind, tok, meta):
    """A .rwkv file (docs/FILE_FORMAT.md) with these header dimensions, tensors, tokenizer and metadata."""
    table_end = 256 + 128 * len(tensors)
    meta_off, tok_off = table_end, table_end + len(meta)
    data_off = align(tok_off + len(tok))
    offsets, off = [], 0
    for _, _, _, raw in tensors:
        offsets.append(off)
        off = align(off + len(raw))
    data_size = offsets[-1] + len(tensors[-1][3])
    size = data_off + data_size
    head = HEADER.pack(b"RWKVCPU\0", 1, 256, h["arch"], h["n_layer"], h["n_embd"], h["dim_att"], h["n_head"],
                       h["head_size"], h["n_ffn"], h["n_vocab"], len(tensors), tok_kind, 256, tok_off, len(tok),
                       meta_off, len(meta), data_off, data_size, size)
    out = bytearray(size)
    out[:len(head)] = head
    for i, (name, dtype, shape, raw) in enumerate(tensors):
        dims = list(shape) + [0] * (4 - len(shape))
        ENTRY.pack_into(out, 256 + 128 * i, name.encode(), dtype, len(shape), *dims, offsets[i], len(raw), 0)
        out[data_off + offsets[i]:data_off + offsets[i] + len(raw)] = raw
    out[meta_off:meta_off + len(meta)] = meta
    out[tok_off:tok_off + len(tok)] = tok
    with open(path, "wb") as f:
        f.write(out)


def first_layer(tensors):
    return [t for t in tensors if not t[0].startswith("blocks.") or t[0].startswith("blocks.0.")]


def cut_vocab(h, tensors, n_vocab):
    """Keep the first n_vocab rows of emb.weight and head.weight (rows are independent in every dtype)."""
    out = []
    for name, dtype, shape, raw in tensors:
        if name in ("emb.weight", "head.weight", "emb.weight.outlier_vals", "head.weight.outlier_vals"):
            row = len(raw) // shape[0]
            shape, raw = (n_vocab,) + shape[1:], raw[:row * n_vocab]
        out.append((name, dtype, shape, raw))
    h["n_vocab"] = n_vocab
    return out


def small_vocab() -> bytes:
    """The World vocab's 256 byte tokens and the next 300 tokens (ids kept)."""
    with open(VOCAB, "rb") as f:
        lines = f.read().split(b"\n")
    return b"\n".join(lines[:556]) + b"\n"


def add_outliers(tensors, name, cols):
    """Give the q8/q4 matrix `name` an outlier table at columns `cols` (docs/FILE_FORMAT.md)."""
    rows = next(t[2][0] for t in tensors if t[0] == name)
    rng = np.random.default_rng(1)
    c = np.asarray(cols, dtype="<f4")
    v = rng.standard_normal((rows, len(cols))).astype("<f2")
    return tensors + [(name + ".outlier_cols", F32, (len(cols),), c.tobytes()),
                      (name + ".outlier_vals", F16, (rows, len(cols)), v.tobytes())]


MODELS = [  # fixture, source layout, quant, tokenizer, vocab rows kept
    ("tiny-4v0-660K", "model.pth", "q8", TOK_BYTES, 64),
    ("random-5v0", "model.pth", "q4", TOK_BYTES, 64),
    ("random-5v1", "model.pth", "q8", TOK_NONE, 48),
    ("tiny-5v2-730K", "model.pth", "q4", TOK_WORLD, 256),
    ("tiny-5v2-730K", "model.pth", "f16", TOK_BYTES, 32),
    ("random-6v0", "model.pth", "q4", TOK_BYTES, 64),
    ("random-7v0", "model.pth", "q4", TOK_BYTES, 64),
]


def make_models(tmp):
    from rwkv_cpu.convert import convert
    out = []
    d = os.path.join(CORPUS, "model_file")
    for fixture, layout, quant, tok_kind, n_vocab in MODELS:
        full = os.path.join(tmp, f"{fixture}-{quant}.rwkv")
        convert(os.path.join(DATA, fixture, layout), full, quant=quant, tokenizer="bytes", progress=False)
        h, tensors, _, _ = read_rwkv(full)
        h["n_layer"] = 1
        tensors = cut_vocab(h, first_layer(tensors), n_vocab)
        name = f"{fixture}-{quant}-1layer"
        if quant == "q4" and fixture == "random-5v0":
            tensors = add_outliers(tensors, "blocks.0.att.key.weight", [0, 5, 31])
            name += "-outliers"
        tok = {TOK_NONE: b"", TOK_BYTES: b"", TOK_WORLD: small_vocab()}[tok_kind]
        meta = json.dumps({"source": fixture, "fuzz_seed": True}).encode()
        path = os.path.join(d, name + ".rwkv")
        write_rwkv(path, h, tensors, tok_kind, tok, meta)
        out.append(path)
    return out


def make_states(models):
    import rwkv_cpu
    d = os.path.join(CORPUS, "state_file")
    for i, path in enumerate(models):
        m = rwkv_cpu.Model(path, n_threads=1)
        _, state = m.forward([1, 2, 3])
        name = os.path.splitext(os.path.basename(path))[0]
        if i % 2:
            state.save(os.path.join(d, name + ".state"))
        else:  # with no metadata at all
            with open(os.path.join(d, name + "-meta.state"), "wb") as f:
                f.write(state.to_bytes({"kind": "fuzz seed", "n_tokens": 3}))


VOCAB_EXTRA = [  # every literal form the parser knows (vocab.c)
    "1000 'plain' 5", '1001 "double \\"quoted\\"" 15', "1002 b'\\x00\\xff\\n' 3", '1003 b"\\101\\7" 2',
    "1004 '\\u00e9\\U0001F600' 6", "1005 '\\x80' 2", "1006 '\\q' 2", "1007 '\u4f60\u597d' 6",
    "1008 '\\a\\b\\f\\n\\r\\t\\v\\\\\\'' 9", "1009 '\\0\\12\\377' 4",
]


def make_vocabs():
    d = os.path.join(CORPUS, "vocab")
    base = small_vocab()
    with open(os.path.join(d, "world-556.txt"), "wb") as f:
        f.write(base)
    bytes_only = b"\n".join(base.split(b"\n")[:256]) + b"\n"
    with open(os.path.join(d, "bytes-only.txt"), "wb") as f:
        f.write(bytes_only + "\n".join(VOCAB_EXTRA).encode() + b"\n")
    with open(os.path.join(d, "crlf-no-final-newline.txt"), "wb") as f:
        f.write(bytes_only.replace(b"\n", b"\r\n") + b"2000 'ab' 2")
    with open(os.path.join(d, "gaps-unsorted.txt"), "wb") as f:
        lines = bytes_only.split(b"\n")[:256]
        f.write(b"\n".join(reversed(lines)) + b"\n70000 'zz' 2\n")


def make_texts():
    d = os.path.join(CORPUS, "tokenizer")
    texts = {
        "english.txt": "The cat sat on the mat. User: What is RWKV?\n\nAssistant: A recurrent network.",
        "chinese.txt": "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u6211\u4eec\u4eca\u5929\u53bb\u516c\u56ed\u3002",
        "emoji.txt": "\U0001F600 \U0001F680 caf\u00e9 na\u00efve \u00e9t\u00e9",
        "code.txt": "def f(x):\n\treturn x ** 2  # square\r\n",
    }
    for name, t in texts.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(t.encode())
    with open(os.path.join(d, "invalid-utf8.bin"), "wb") as f:
        f.write(b"\xff\xfe\x80abc\xc3\x28\xe2\x82\x00\x01\x02")
    with open(os.path.join(d, "ids.bin"), "wb") as f:
        f.write(np.array([0, 1, 256, 65529, 33, 10000, 65535, -1], dtype="<i4").tobytes())


def make_python_state_seeds():
    """States of the bundled model (what the py_state_file target loads them into)."""
    import rwkv_cpu
    d = os.path.join(CORPUS, "py_state_file")
    os.makedirs(d, exist_ok=True)
    m = rwkv_cpu.Model(n_threads=1)
    _, s = m.forward([1, 2, 3])
    with open(os.path.join(d, "bundled.state"), "wb") as f:
        f.write(s.to_bytes({"kind": "chat", "turns": 1, "user": "User"}))
    with open(os.path.join(d, "bundled-bare.state"), "wb") as f:
        f.write(m.new_state().to_bytes())


def make_python_seeds():
    import zipfile
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from ckpt_helpers import tensor_pickle, write_pth, write_safetensors_raw

    rng = np.random.default_rng(0)
    tensors = {"emb.weight": (rng.standard_normal((4, 8)).astype(np.float32), "F32"),
               "blocks.0.ln1.weight": (np.ones(8, np.float16), "F16"),
               "head.weight": ((rng.integers(0, 1 << 16, (4, 8))).astype(np.uint16), "BF16")}
    d = os.path.join(CORPUS, "py_torch_zip")
    write_pth(os.path.join(d, "small.pth"), tensors)
    write_pth(os.path.join(d, "small-deflated.pth"), tensors, prefix="model", compress=zipfile.ZIP_DEFLATED)
    d = os.path.join(CORPUS, "py_pickle")
    with zipfile.ZipFile(os.path.join(DATA, "tiny-5v2-730K", "model.pth")) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        with open(os.path.join(d, "tiny-5v2-data.pkl"), "wb") as f:
            f.write(zf.read(name))
    with open(os.path.join(d, "hand-made.pkl"), "wb") as f:
        f.write(tensor_pickle([("a", "F32", "0", 6, (2, 3), (3, 1), 0),
                               ("b", "BF16", "1", 4, (4,), (1,), 0)]))
    d = os.path.join(CORPUS, "py_safetensors")
    data = rng.standard_normal(12).astype("<f4").tobytes() + np.ones(4, "<f2").tobytes()
    header = {"emb.weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
              "ln.weight": {"dtype": "F16", "shape": [4], "data_offsets": [48, 56]},
              "__metadata__": {"format": "pt"}}
    write_safetensors_raw(os.path.join(d, "small.safetensors"), header, data)
    d = os.path.join(CORPUS, "py_index_json")
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 56}, "weight_map": {
            "emb.weight": "model-00001-of-00002.safetensors", "ln.weight": "model-00002-of-00002.safetensors"}}, f)
    d = os.path.join(CORPUS, "py_tokenizer")
    with open(os.path.join(d, "world.bin"), "wb") as f:
        f.write(bytes([TOK_WORLD]) + b"\n".join(small_vocab().split(b"\n")[:300]))
    with open(os.path.join(d, "bytes.bin"), "wb") as f:
        f.write(bytes([TOK_BYTES]))
    make_python_state_seeds()
    import tokenizers
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(["The cat sat on the mat. Hello, world!"] * 4, vocab_size=280, min_frequency=1,
                            show_progress=False)
    with open(os.path.join(d, "hf-byte-level-bpe.bin"), "wb") as f:
        f.write(bytes([2]) + bpe.to_str().encode())


def main():
    for sub in ("model_file", "state_file", "vocab", "tokenizer", "py_pickle", "py_torch_zip", "py_safetensors",
                "py_index_json", "py_state_file", "py_tokenizer"):
        p = os.path.join(CORPUS, sub)
        shutil.rmtree(p, ignore_errors=True)
        os.makedirs(p)
    with tempfile.TemporaryDirectory() as tmp:
        models = make_models(tmp)
    make_states(models)
    make_vocabs()
    make_texts()
    make_python_seeds()
    for sub in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, sub))
        size = sum(os.path.getsize(os.path.join(CORPUS, sub, f)) for f in files)
        print(f"{sub}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    sys.exit(main())
