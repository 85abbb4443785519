"""Tests of rwkv_cpu.tokenizer: the World, bytes and Hugging Face tokenizers, and the C tokenizer API underneath.

Reference data (tests/data/README.md): the World cases come from the official rwkv 0.8.32 TRIE_TOKENIZER, the
20B cases from Hugging Face tokenizers. The World vocab and the 20B tokenizer file themselves are the ones shipped in
the package (rwkv_cpu/data/).
"""
from __future__ import annotations

import ast
import base64
import json
import random
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from rwkv_cpu._ffi import ffi, lib
from rwkv_cpu.errors import ModelFormatError, TokenError, UnsupportedModelError
from rwkv_cpu.tokenizer import (KIND_BYTES, KIND_HF_JSON, KIND_NONE, KIND_WORLD, WORLD_VOCAB_PATH, Tokenizer)

DATA = Path(__file__).parent / "data"
NEOX_20B_PATH = Path(WORLD_VOCAB_PATH).parent / "20B_tokenizer.json"  # shipped in the package
WORLD_CASES = json.loads((DATA / "tokenizer-world" / "cases.json").read_text(encoding="utf-8"))["cases"]
HF_CASES = json.loads((DATA / "tokenizer-20b" / "cases.json").read_text(encoding="utf-8"))["cases"]

RWKV_ERR_BUFFER = 8
RWKV_ERR_TOKEN = 6

# The reference test vector of docs/RWKV_REFERENCE.md section 8 (also in the random-5v2 fixture).
CHAT_TEXT = "User: Hello, how are you?\n\nAssistant: 我很好，谢谢！🙂 RWKV runs on CPUs."
CHAT_IDS = [24281, 59, 36786, 45, 21835, 21286, 22799, 64, 261, 5585, 41693, 59, 33, 12605, 12337, 11685, 19137,
            16774, 16774, 19126, 3319, 2417, 4171, 1184, 31908, 4712, 28583, 47]


@pytest.fixture(scope="module")
def world() -> Tokenizer:
    return Tokenizer.world()


@pytest.fixture(scope="module")
def world_reference() -> dict:
    """id -> bytes of the packaged vocab, decoded by Python itself (ast.literal_eval, as trusted test input)."""
    vocab = {}
    for line in Path(WORLD_VOCAB_PATH).read_bytes().decode("utf-8").splitlines():
        literal = ast.literal_eval(line[line.index(" ") + 1:line.rindex(" ")])
        vocab[int(line[:line.index(" ")])] = literal.encode("utf-8") if isinstance(literal, str) else literal
    return vocab


@pytest.fixture(scope="module")
def hf20b() -> Tokenizer:
    return Tokenizer.from_hf_json(NEOX_20B_PATH.read_text(encoding="utf-8"))


def case_bytes(case: dict) -> bytes:
    return case["text"].encode("utf-8") if "text" in case else base64.b64decode(case["bytes_b64"])


def greedy_reference(vocab: dict, data: bytes) -> list:
    """The reference algorithm, spelled out: at each position the longest token that matches."""
    by_bytes = {}
    for id, b in sorted(vocab.items(), reverse=True):
        by_bytes[b] = id                     # lowest id wins among equal byte strings
    longest = max(map(len, by_bytes))
    out, i = [], 0
    while i < len(data):
        for n in range(min(longest, len(data) - i), 0, -1):
            if data[i:i + n] in by_bytes:
                out.append(by_bytes[data[i:i + n]])
                i += n
                break
        else:
            raise AssertionError(f"byte {data[i]} has no token")
    return out


def byte_lines() -> list:
    """The 256 one-byte tokens of a minimal complete vocab, ids 1..256 (id = byte + 1, as in World)."""
    return [f"{b + 1} b'\\x{b:02x}' 1" for b in range(256)]


def vocab_text(*extra_lines: str, newline: str = "\n") -> bytes:
    return (newline.join(byte_lines() + list(extra_lines)) + newline).encode("utf-8")


def world_from(text: bytes) -> Tokenizer:
    return Tokenizer._from_blob(KIND_WORLD, text)


# ---- World: reference cases ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", WORLD_CASES, ids=lambda c: repr(c.get("text", c.get("bytes_b64")))[:40])
def test_world_cases(world, case):
    data = case_bytes(case)
    assert world.encode(data) == case["ids"]
    assert world.decode_bytes(case["ids"]) == data
    if "text" in case:
        assert world.encode(case["text"]) == case["ids"]
        assert world.decode(case["ids"]) == case["text"]


def test_world_cases_cover_raw_bytes():
    assert len(WORLD_CASES) == 139
    assert sum("bytes_b64" in c for c in WORLD_CASES) == 27


def test_world_reference_vector(world):
    assert world.encode(CHAT_TEXT) == CHAT_IDS
    assert world.encode("🙂") == [3319, 2417]
    assert world.decode(CHAT_IDS) == CHAT_TEXT
    assert world.encode("") == []
    assert world.kind == "world"
    assert world.vocab_size == 65530
    assert repr(world) == "Tokenizer(kind='world', vocab_size=65530)"


def test_world_every_token_matches_python(world, world_reference):
    """The C literal parser agrees with Python on all 65529 lines of the real vocab."""
    assert len(world_reference) == 65529
    assert min(world_reference) == 1 and max(world_reference) == 65529
    for id, expected in world_reference.items():
        assert world.token_bytes(id) == expected, id


def test_world_single_bytes(world):
    assert [world.encode(bytes([b])) for b in range(256)] == [[b + 1] for b in range(256)]
    assert [world.token_bytes(b + 1) for b in range(256)] == [bytes([b]) for b in range(256)]
    assert world.decode_bytes(world.encode(bytes(range(256)))) == bytes(range(256))


def test_world_matches_greedy_reference(world, world_reference):
    """Random mixes of whole tokens, text and raw bytes encode as the reference algorithm does."""
    rng = random.Random(1234)
    tokens = list(world_reference.values())
    for _ in range(30):
        parts = []
        while sum(map(len, parts)) < 1500:
            r = rng.random()
            if r < 0.6:
                parts.append(rng.choice(tokens))
            elif r < 0.8:
                parts.append("".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x4E00, 0x9FFF),
                                                     rng.randrange(0x1F600, 0x1F650)])) for _ in range(5)).encode())
            else:
                parts.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6))))
        data = b"".join(parts)
        ids = world.encode(data)
        assert ids == greedy_reference(world_reference, data)
        assert world.decode_bytes(ids) == data


def test_encode_np_and_input_types(world):
    arr = world.encode_np(CHAT_TEXT)
    assert arr.dtype == np.int32 and arr.tolist() == CHAT_IDS
    data = CHAT_TEXT.encode()
    assert world.encode(bytearray(data)) == CHAT_IDS
    assert world.encode(memoryview(data)) == CHAT_IDS
    assert world.decode(np.array(CHAT_IDS, dtype=np.int64)) == CHAT_TEXT
    assert world.decode(tuple(CHAT_IDS)) == CHAT_TEXT
    assert world.decode([]) == "" and world.decode_bytes(np.array([], dtype=np.int32)) == b""
    assert world.decode(np.array(CHAT_IDS, dtype=object)) == CHAT_TEXT
    with pytest.raises(TypeError):
        world.encode(12)
    with pytest.raises(TypeError):
        world.decode([1.5])
    with pytest.raises(TypeError):
        world.decode([[1, 2]])


# ---- decoding and ids ------------------------------------------------------------------------------------------
def test_id_zero_is_end_of_text(world):
    assert world.decode([0]) == ""
    assert world.decode([33155, 0, 40213]) == "Hello world"
    with pytest.raises(TokenError, match="token id 0 "):
        world.token_bytes(0)


@pytest.mark.parametrize("bad", [65530, 65535, -1, 2**31 - 1, -(2**31)])
def test_unknown_ids(world, bad):
    with pytest.raises(TokenError, match=f"token id {bad} "):
        world.decode([33155, bad])
    with pytest.raises(TokenError, match=f"token id {bad} "):
        world.token_bytes(bad)


@pytest.mark.parametrize("bad", [2**31, -(2**31) - 1, 2**70])
def test_ids_beyond_int32(world, bad):
    with pytest.raises(TokenError, match=str(bad)):
        world.decode([1, bad])
    with pytest.raises(TokenError, match=str(bad)):
        world.token_bytes(bad)


def test_decode_position_in_message(world):
    with pytest.raises(TokenError, match="at position 2"):
        world.decode([1, 2, 99999])


def test_decode_large_output_grows_buffer(world):
    longest = max(range(1, 65530), key=lambda i: len(world.token_bytes(i)))
    ids = [longest] * 100                        # 128 bytes each: more than the first guess of 8 per id
    assert world.decode_bytes(ids) == world.token_bytes(longest) * 100


# ---- streaming -------------------------------------------------------------------------------------------------
def test_stream_split_emoji(world):
    s = world.stream_decoder()
    assert s.feed(3319) == ""                    # first half of 🙂: held back
    assert s.feed(2417) == "🙂"
    assert s.flush() == ""


def test_stream_incomplete_tail_flushes_replacement(world):
    s = world.stream_decoder()
    assert s.feed([33155, 3319]) == "Hello"
    assert s.flush() == "\ufffd"
    assert s.feed(33155) == "Hello"              # flush left the decoder empty


@pytest.mark.parametrize("text", [CHAT_TEXT, "日本語のテキストとカタカナ、ひらがな。", "中文：人工智能正在改变世界。",
                                  "🙂😀🚀 emoji 👩‍👩‍👧 family"])
def test_stream_one_id_at_a_time(world, text):
    ids = world.encode(text)
    s = world.stream_decoder()
    pieces = [s.feed(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + s.flush() == text


def test_stream_splits_characters():
    """The vector above really splits characters across tokens, so the test means something."""
    world = Tokenizer.world()
    split = [i for i in world.encode(CHAT_TEXT) if not _is_utf8(world.token_bytes(i))]
    assert split == [3319, 2417]


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("case", WORLD_CASES, ids=lambda c: repr(c.get("text", c.get("bytes_b64")))[:40])
def test_stream_cases(world, case):
    s = world.stream_decoder()
    pieces = [s.feed(i) for i in case["ids"]]
    text = "".join(pieces) + s.flush()
    assert text == case_bytes(case).decode("utf-8", errors="replace")
    if "text" in case:
        assert all("\ufffd" not in p for p in pieces)


# ---- the C buffer protocol -------------------------------------------------------------------------------------
def test_encode_buffer_protocol(world):
    data = CHAT_TEXT.encode()
    n = ffi.new("uint64_t *")
    st = lib.rwkv_tokenizer_encode(world._handle, data, len(data), ffi.NULL, 0, n)
    assert st == RWKV_ERR_BUFFER and n[0] == len(CHAT_IDS)
    assert "28 are needed" in ffi.string(lib.rwkv_last_error()).decode()
    out = ffi.new("int32_t[]", 5)
    st = lib.rwkv_tokenizer_encode(world._handle, data, len(data), out, 5, n)
    assert st == RWKV_ERR_BUFFER and n[0] == len(CHAT_IDS)
    assert list(out) == CHAT_IDS[:5]             # the first cap ids are written
    out = ffi.new("int32_t[]", len(CHAT_IDS))
    assert lib.rwkv_tokenizer_encode(world._handle, data, len(data), out, len(CHAT_IDS), n) == 0
    assert list(out) == CHAT_IDS and n[0] == len(CHAT_IDS)
    assert lib.rwkv_tokenizer_encode(world._handle, ffi.NULL, 0, ffi.NULL, 0, n) == 0 and n[0] == 0


def test_decode_buffer_protocol(world):
    ids = ffi.new("int32_t[]", CHAT_IDS)
    data = CHAT_TEXT.encode()
    n = ffi.new("uint64_t *")
    assert lib.rwkv_tokenizer_decode(world._handle, ids, len(CHAT_IDS), ffi.NULL, 0, n) == RWKV_ERR_BUFFER
    assert n[0] == len(data)
    out = ffi.new("uint8_t[]", 10)
    assert lib.rwkv_tokenizer_decode(world._handle, ids, len(CHAT_IDS), out, 10, n) == RWKV_ERR_BUFFER
    assert n[0] == len(data)
    out = ffi.new("uint8_t[]", len(data))
    assert lib.rwkv_tokenizer_decode(world._handle, ids, len(CHAT_IDS), out, len(data), n) == 0
    assert ffi.buffer(out, n[0])[:] == data
    bad = ffi.new("int32_t[]", [33155, 70000])
    assert lib.rwkv_tokenizer_decode(world._handle, bad, 2, out, len(data), n) == RWKV_ERR_TOKEN


def test_null_arguments():
    n = ffi.new("uint64_t *")
    assert lib.rwkv_tokenizer_encode(ffi.NULL, b"a", 1, ffi.NULL, 0, n) == 4
    assert lib.rwkv_tokenizer_new_world(ffi.NULL, 5, ffi.new("rwkv_tokenizer **")) == 4
    assert lib.rwkv_tokenizer_vocab_size(ffi.NULL) == 0
    lib.rwkv_tokenizer_free(ffi.NULL)


# ---- the bytes tokenizer ---------------------------------------------------------------------------------------
def test_bytes_tokenizer():
    tok = Tokenizer.bytes()
    assert tok.kind == "bytes" and tok.vocab_size == 256
    data = bytes(range(256)) + b"hello \xff\x00"
    assert tok.encode(data) == list(data)
    assert tok.encode("é") == [0xC3, 0xA9]
    assert tok.decode_bytes(list(data)) == data
    assert tok.token_bytes(0) == b"\x00"         # id 0 is the NUL byte here, not end of text
    assert tok.decode([104, 105]) == "hi"
    with pytest.raises(TokenError, match="256"):
        tok.decode([256])
    s = tok.stream_decoder()
    assert [s.feed(b) for b in "é!".encode()] == ["", "é", "!"]
    assert Tokenizer._from_blob(KIND_BYTES, b"").encode(b"ab") == [97, 98]


# ---- vocab parsing ---------------------------------------------------------------------------------------------
def test_minimal_vocab_and_escapes():
    lines = {
        300: r"'\\'", 301: r"'\''", 302: r"'\"'", 303: r'"\"\'"', 304: r"'\n\t\r\a\b\f\v'", 305: r"'\0\12\101'",
        306: r"'\x41\xe9'", 307: r"'\u00e9\u4e2d'", 308: r"'\U0001F642'", 309: r"'\q\8'", 310: r"b'\u1234'",
        311: r"b'\xff\x00\7'", 312: "'é中🙂'", 313: r"'\777'", 314: r"'a\ b'", 315: r"b'\N'", 316: "'tab\there'",
        317: r"'\z\é'",
    }
    extra = [f"{id} {lit} {len(_py_bytes(lit))}" for id, lit in lines.items()]
    tok = world_from(vocab_text(*extra))
    for id, lit in lines.items():
        assert tok.token_bytes(id) == _py_bytes(lit), lit
    assert tok.vocab_size == 318


def _py_bytes(literal: str) -> bytes:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # Python warns about the invalid escapes we test on purpose
        value = ast.literal_eval(literal)
    return value.encode("utf-8") if isinstance(value, str) else value


def test_random_literals_match_python():
    """repr() of random strings and bytes (every escape repr emits) parses to what Python reads back."""
    rng = random.Random(7)
    literals = []
    for k in range(300):
        if k % 3 == 0:
            literals.append(repr(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))))
        else:
            chars = []
            for _ in range(rng.randrange(1, 8)):
                cp = rng.choice([rng.randrange(0, 128), rng.randrange(128, 0x800), rng.randrange(0x800, 0xD800),
                                 rng.randrange(0xE000, 0x110000)])
                chars.append(chr(cp))
            literals.append(repr("".join(chars)))
    extra = [f"{1000 + k} {lit} {len(_py_bytes(lit))}" for k, lit in enumerate(literals)]
    tok = world_from(vocab_text(*extra))
    for k, lit in enumerate(literals):
        assert tok.token_bytes(1000 + k) == _py_bytes(lit), lit


def test_vocab_line_endings_order_and_gaps():
    extra = ["1000 'hello' 5", "700 ' world' 6"]
    crlf = world_from(vocab_text(*extra, newline="\r\n"))
    no_final_newline = world_from(vocab_text(*extra)[:-1])
    for tok in (crlf, no_final_newline):
        assert tok.vocab_size == 1001
        assert tok.encode("hello world") == [1000, 700]
        with pytest.raises(TokenError, match="token id 500 "):
            tok.decode([500])                    # a gap in the ids


def test_duplicate_bytes_encode_to_lowest_id():
    tok = world_from(vocab_text("900 'ab' 2", "800 'ab' 2", "850 b'ab' 2"))
    assert tok.encode("abab") == [800, 800]
    assert tok.decode([900, 850]) == "abab"


def test_world_path_argument(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(vocab_text("300 'xyz' 3"))
    assert Tokenizer.world(path).encode("xyzx") == [300, 121]
    path.write_bytes(b"1 'a' 2\n")
    with pytest.raises(ModelFormatError, match="vocab.txt"):
        Tokenizer.world(str(path))


BAD_VOCABS = [
    # (name, vocab text, regex the message must match)
    ("wrong length field", b"1 'a' 2\n", r"line 1, column 7: the byte length field says 2 but the literal has 1 bytes"),
    ("huge length field", b"1 'a' 99999999999999999999\n", r"line 1.*length field is too large: the literal has 1 "),
    ("wrong length, utf-8", "1 'é' 1\n".encode(), r"line 1.*says 1 but the literal has 2 bytes"),
    ("bad hex escape", b"1 '\\xZZ' 1\n", r"line 1, column 4: bad \\x escape"),
    ("truncated \\u", b"1 '\\u12' 1\n", r"line 1.*bad \\u escape: it needs 4 hex digits"),
    ("\\U too big", b"1 '\\U00110000' 4\n", r"line 1.*beyond U\+10FFFF"),
    ("surrogate", b"1 '\\ud800' 3\n", r"line 1.*surrogate U\+D800"),
    ("named escape", b"1 '\\N{DASH}' 3\n", r"line 1.*\\N\{\.\.\.\} escapes are not supported"),
    ("big octal in bytes", b"1 b'\\777' 1\n", r"line 1.*octal escape above \\377"),
    ("unterminated literal", b"1 'abc 3\n", r"line 1.*unterminated literal \(no closing '\)"),
    ("trailing backslash", b"1 'abc\\\n", r"line 1.*unterminated literal"),
    ("duplicate id", b"1 'a' 1\n2 'b' 1\n1 'c' 1\n", r"line 3: duplicate token id 1 \(already on line 1\)"),
    ("non-numeric id", b"x 'a' 1\n", r"line 1, column 1: expected a decimal token id"),
    ("negative id", b"-1 'a' 1\n", r"line 1, column 1: expected a decimal token id"),
    ("huge id", b"99999999999999999999 'a' 1\n", r"line 1.*token id above the limit 4194304"),
    ("id just above the limit", b"4194305 'a' 1\n", r"token id above the limit"),
    ("id 0", b"0 'a' 1\n", r"line 1, column 1: token id 0 is reserved"),
    ("empty file", b"", r"empty vocab text"),
    ("empty line", b"1 'a' 1\n\n2 'b' 1\n", r"line 2, column 1: empty line"),
    ("blank trailing lines", b"1 'a' 1\n\n", r"line 2.*empty line"),
    ("empty token", b"1 '' 0\n", r"line 1, column 3: empty token"),
    ("no length", b"1 'a'\n", r"line 1.*expected one space after the literal"),
    ("two spaces", b"1  'a' 1\n", r"line 1, column 3: expected a literal"),
    ("trailing text", b"1 'a' 1 x\n", r"line 1, column 8: unexpected text after the byte length"),
    ("unquoted", b"1 a 1\n", r"line 1.*expected a literal"),
    ("raw prefix", b"1 r'a' 1\n", r"line 1.*expected a literal"),
    ("non-ascii in bytes", "1 b'é' 2\n".encode(), r"line 1.*non-ASCII byte 0xC3 in a bytes literal"),
    ("invalid utf-8", b"1 '\xff' 1\n", r"line 1, column 4: invalid UTF-8"),
    ("overlong utf-8", b"1 '\xc0\x80' 2\n", r"invalid UTF-8"),
    ("utf-8 surrogate", b"1 '\xed\xa0\x80' 3\n", r"invalid UTF-8"),
    ("nul byte", b"1 'a\x00' 2\n", r"NUL byte inside a literal"),
    ("lone carriage return", b"1 'a\rb' 2\n", r"carriage return byte inside a literal"),
    ("overlong line", b"1 '" + b"a" * 9000 + b"' 9000\n", r"line 1.*line longer than 8192 bytes"),
    ("token too long", b"1 '" + b"a" * 2000 + b"' 2000\n", r"line 1, column 3: token of 2000 bytes, above the limit"),
    ("binary garbage", bytes((i * 167 + 13) % 256 for i in range(4096)), r"vocab line 1, column 1"),
    ("error on a later line", b"1 'a' 1\n2 'b' 1\n3 'c 1\n", r"vocab line 3"),
    ("missing byte tokens", b"1 'a' 1\n2 'b' 1\n", r"no one-byte token for byte 0x00"),
]


@pytest.mark.parametrize("text, pattern", [v[1:] for v in BAD_VOCABS], ids=[v[0] for v in BAD_VOCABS])
def test_bad_vocab(text, pattern):
    with pytest.raises(ModelFormatError, match=pattern):
        world_from(text)


def test_missing_byte_token_named():
    lines = [line for line in byte_lines() if not line.startswith("66 ")]   # drop 'A' (0x41, id 66)
    with pytest.raises(ModelFormatError, match="byte 0x41"):
        world_from(("\n".join(lines) + "\n").encode())


def test_bad_vocab_on_real_file(tmp_path):
    """A corrupted copy of the real vocab is refused on the right line."""
    lines = Path(WORLD_VOCAB_PATH).read_bytes().split(b"\r\n")
    lines[40000] = lines[40000].replace(b" ", b"  ", 1)
    with pytest.raises(ModelFormatError, match="vocab line 40001, column"):
        world_from(b"\r\n".join(lines))


# ---- blobs -----------------------------------------------------------------------------------------------------
def test_from_blob_kinds():
    text = Path(WORLD_VOCAB_PATH).read_bytes()
    assert Tokenizer._from_blob(KIND_WORLD, text).encode(CHAT_TEXT) == CHAT_IDS
    assert Tokenizer._from_blob(KIND_BYTES, b"").kind == "bytes"
    hf_json = NEOX_20B_PATH.read_bytes()
    assert Tokenizer._from_blob(KIND_HF_JSON, hf_json).encode("Hello world") == [12092, 1533]
    with pytest.raises(UnsupportedModelError, match="no tokenizer"):
        Tokenizer._from_blob(KIND_NONE, b"")
    with pytest.raises(UnsupportedModelError, match="unknown tokenizer kind 9"):
        Tokenizer._from_blob(9, b"")
    with pytest.raises(ModelFormatError, match="the model's World vocab: vocab line 1"):
        Tokenizer._from_blob(KIND_WORLD, b"1 'a' 5")


# ---- Hugging Face (GPT-NeoX 20B) ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", HF_CASES, ids=lambda c: repr(c["text"])[:40])
def test_hf_20b_cases(hf20b, case):
    assert hf20b.encode(case["text"]) == case["ids"]
    assert hf20b.decode(case["ids"]) == case["decoded"]
    s = hf20b.stream_decoder()
    pieces = [s.feed(i) for i in case["ids"]]
    assert "".join(pieces) + s.flush() == case["decoded"]
    if "\ufffd" not in case["decoded"]:
        assert all("\ufffd" not in p for p in pieces)


def test_hf_20b_basics(hf20b):
    assert hf20b.kind == "hf" and hf20b.vocab_size == 50277
    assert hf20b.encode("\nIn a shocking finding") == [187, 688, 247, 29103, 4560]
    assert hf20b.encode(" Hello world") == [24387, 1533]
    assert hf20b.encode_np("Hello world").tolist() == [12092, 1533]
    assert hf20b.encode("Hello world".encode()) == [12092, 1533]
    with pytest.raises(UnicodeDecodeError):
        hf20b.encode(b"\xff")                    # byte-level BPE encodes text, not arbitrary bytes
    assert hf20b.token_bytes(24387) == b" Hello"
    assert hf20b.token_bytes(0) == b"<|endoftext|>"     # special tokens have their text...
    assert hf20b.decode([12092, 0, 1533]) == "Hello world"   # ...but decode to nothing, as in tokenizers
    assert hf20b.token_bytes(50276) == b"  "             # an added token of plain spaces
    with pytest.raises(TokenError, match="50277"):
        hf20b.decode([50277])
    with pytest.raises(TokenError, match="-1"):
        hf20b.token_bytes(-1)


def test_hf_20b_token_bytes_match_tokenizers(hf20b):
    """Our ByteLevel table gives, for every token, the bytes that tokenizers' own decoder produces."""
    hf = hf20b._hf
    rng = random.Random(3)
    for id in list(range(300)) + rng.sample(range(300, 50277), 3000):
        expected = hf.decode([id], skip_special_tokens=False)
        assert hf20b.token_bytes(id).decode("utf-8", errors="replace") == expected, id


def test_hf_stream_split_character(hf20b):
    ids = hf20b.encode("谢谢")                    # byte-level BPE splits this character across tokens
    assert any(not _is_utf8(hf20b.token_bytes(i)) for i in ids)
    s = hf20b.stream_decoder()
    pieces = [s.feed(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces) and "".join(pieces) == "谢谢"


def test_hf_bad_json():
    with pytest.raises(ModelFormatError, match="invalid Hugging Face tokenizer JSON"):
        Tokenizer.from_hf_json("{not json")
    with pytest.raises(ModelFormatError, match="not UTF-8"):
        Tokenizer.from_hf_json(b"\xff\xfe")
    wordpiece = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
                 "post_processor": None, "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
                 "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                           "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1}}}
    with pytest.raises(UnsupportedModelError, match="'WordPiece'"):
        Tokenizer.from_hf_json(json.dumps(wordpiece))


# ---- threads, packaging ------------------------------------------------------------------------------------------
def test_shared_between_threads(world):
    texts = [c["text"] for c in WORLD_CASES if "text" in c]
    expected = [world.encode(t) for t in texts]
    errors = []

    def work():
        for _ in range(20):
            if [world.encode(t) for t in texts] != expected:
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_vocab_shipped_with_package():
    data = Path(WORLD_VOCAB_PATH).read_bytes()
    assert len(data) == 1159262 and data.startswith(b"1 '\\x00' 1\r\n")


# ---- rwkv_tokenizer_from_model -----------------------------------------------------------------------------------
def write_tiny_model(path: Path, tokenizer_kind: int, blob: bytes) -> None:
    """A minimal valid RWKV-5.2 .rwkv file (docs/FILE_FORMAT.md): 1 layer, n_embd 4, one head of 4, ffn 4,
    vocab 256, zero f32 weights, with the given tokenizer blob."""
    C = A = N = F = 4
    V = 256
    shapes = {"emb.weight": (V, C), "head.weight": (V, C), "ln_out.weight": (C,), "ln_out.bias": (C,)}
    for name in ["ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.time_mix_k", "att.time_mix_v",
                 "att.time_mix_r", "att.time_mix_g", "ffn.time_mix_k", "ffn.time_mix_r"]:
        shapes[f"blocks.0.{name}"] = (C,)
    for name in ["att.time_decay", "att.time_faaaa"]:
        shapes[f"blocks.0.{name}"] = (1, N)
    for name in ["att.receptance.weight", "att.key.weight", "att.value.weight", "att.gate.weight"]:
        shapes[f"blocks.0.{name}"] = (A, C)
    shapes.update({"blocks.0.att.output.weight": (C, A), "blocks.0.att.ln_x.weight": (A,),
                   "blocks.0.att.ln_x.bias": (A,), "blocks.0.ffn.key.weight": (F, C),
                   "blocks.0.ffn.receptance.weight": (C, C), "blocks.0.ffn.value.weight": (C, F)})

    def align(x: int) -> int:
        return (x + 63) // 64 * 64

    table_off = 256
    meta_off = tok_off = table_off + 128 * len(shapes)
    data_off = align(tok_off + len(blob))
    table, offset = b"", 0
    for name, shape in shapes.items():
        nbytes = 4 * int(np.prod(shape))
        table += struct.pack("<64sII4QQQQ", name.encode(), 0, len(shape), *(list(shape) + [0] * (4 - len(shape))),
                             offset, nbytes, 0)
        offset = align(offset + nbytes)
    data_size = offset
    file_size = data_off + data_size
    header = struct.pack("<8sIIIIIIIIIIII", b"RWKVCPU\0", 1, 256, 52, 1, C, A, 1, N, F, V, len(shapes),
                         tokenizer_kind)
    header += struct.pack("<8Q", table_off, tok_off, len(blob), meta_off, 0, data_off, data_size, file_size)
    header += bytes(256 - len(header))
    body = header + table + blob
    path.write_bytes(body + bytes(file_size - len(body)))


def c_tokenizer_from_model(path: Path):
    """(status, message, tokenizer handle or None) of rwkv_tokenizer_from_model on a model file."""
    model = ffi.new("rwkv_model **")
    assert lib.rwkv_model_load(str(path).encode(), 1, model) == 0, ffi.string(lib.rwkv_last_error())
    try:
        tok = ffi.new("rwkv_tokenizer **")
        st = lib.rwkv_tokenizer_from_model(model[0], tok)
        message = ffi.string(lib.rwkv_last_error()).decode()
        handle = ffi.gc(tok[0], lib.rwkv_tokenizer_free) if st == 0 else None
        return st, message, handle
    finally:
        lib.rwkv_model_free(model[0])           # the tokenizer does not borrow from the model


def test_tokenizer_from_model(tmp_path):
    path = tmp_path / "m.rwkv"
    write_tiny_model(path, KIND_WORLD, Path(WORLD_VOCAB_PATH).read_bytes())
    st, _, handle = c_tokenizer_from_model(path)
    assert st == 0
    assert Tokenizer("world", handle).encode(CHAT_TEXT) == CHAT_IDS

    write_tiny_model(path, KIND_BYTES, b"")
    st, _, handle = c_tokenizer_from_model(path)
    assert st == 0 and Tokenizer("bytes", handle).encode(b"ab") == [97, 98]

    write_tiny_model(path, KIND_WORLD, b"1 'a' 1\n1 'b' 1\n")
    st, message, _ = c_tokenizer_from_model(path)
    assert st == 2 and message == "the model's World tokenizer: vocab line 2: duplicate token id 1 (already on line 1)"

    for kind, expected in [(KIND_HF_JSON, "Hugging Face"), (KIND_NONE, "no tokenizer")]:
        write_tiny_model(path, kind, b"{}" if kind == KIND_HF_JSON else b"")
        st, message, _ = c_tokenizer_from_model(path)
        assert st == 3 and expected in message
