"""The converter's pickle reader: a restricted interpreter for the `data.pkl` of torch checkpoints.

A `.pth` file holds a pickle, and a pickle is a program: `pickle.load` will import and call whatever the
file names (`os.system`, `builtins.eval`, ...). This module never uses `pickle`. It is a small stack
machine written from scratch that understands the opcodes `torch.save` emits for a dict of tensors and
refuses every other opcode. Its GLOBAL opcode does not import anything: the name is looked up in
`ALLOWED_GLOBALS`, a table of inert markers (`torch._utils._rebuild_tensor_v2`, `collections.OrderedDict`,
the typed storage classes, a few dtypes); any other name raises `UnsafePickleError` naming it, before
anything else happens. REDUCE applies the converter's own replacement for an allowed marker, which builds a
`TensorRef`: a description of a tensor (storage key, dtype, shape, strides, offset) with no data.

Why not subclass `pickle.Unpickler` and override `find_class`? Its C implementation still runs before
`find_class` is reached, and some of it trusts the file: LONG_BINPUT with index 2**32-1 makes it grow its
memo array to that size. Here the memo is a dict with a bounded number of entries.

Every resource is bounded; exceeding a limit is a `ModelFormatError` naming the limit:
  MAX_PICKLE_BYTES   size of data.pkl                     64 MiB  (a 7B model's is ~50 KiB)
  MAX_OPS            opcodes executed                     2**23
  MAX_MEMO           memo entries                         2**20
  MAX_STACK          values on the stack                  2**20
  MAX_MARK_DEPTH     nested MARKs (tuples/dicts/lists)    64      (torch uses 3)
  MAX_STRING_BYTES   one string or bytes value            1 MiB
  MAX_DIMS           dimensions of a tensor               8
Time is linear in the pickle's size: every opcode costs O(1) or consumes the items it touches. Values are
never hashed or compared recursively (dict keys must be plain scalars), so a deeply nested value built
with TUPLE1 chains costs memory proportional to the opcodes that built it and nothing more.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

from ..errors import ModelFormatError, UnsafePickleError

MAX_PICKLE_BYTES = 64 << 20
MAX_OPS = 1 << 23
MAX_MEMO = 1 << 20
MAX_STACK = 1 << 20
MAX_MARK_DEPTH = 64
MAX_STRING_BYTES = 1 << 20
MAX_DIMS = 8
MAX_GLOBAL_NAME = 256


@dataclass(frozen=True)
class StorageRef:
    """A torch storage named by a persistent id: the zip entry `<prefix>/data/<key>`."""

    key: str
    dtype: str  # F32, F16, BF16, ... (tensors.DTYPES)
    numel: int  # elements the storage holds


@dataclass(frozen=True)
class TensorRef:
    """A tensor described by `_rebuild_tensor_v2`: a view of `storage`. Holds no data."""

    storage: StorageRef
    shape: Tuple[int, ...]
    strides: Tuple[int, ...]  # in elements
    storage_offset: int  # in elements

    @property
    def dtype(self) -> str:
        return self.storage.dtype


# ---- the allow-list ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _StorageType:
    """Marker for `torch.<X>Storage`: only ever used inside a persistent id."""

    dtype: str


@dataclass(frozen=True)
class _TorchDtype:
    """Marker for `torch.float32` etc. Inert: accepted as a value, never called."""

    dtype: str


@dataclass(frozen=True)
class _Function:
    """Marker for an allowed callable; REDUCE runs the converter's own `impl` instead of the real one."""

    qualname: str
    impl: Callable[[tuple], Any]


_STORAGE_DTYPES = {
    "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16", "DoubleStorage": "F64",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
}
_TORCH_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_tuple(v: object, what: str) -> Tuple[int, ...]:
    """A flat tuple of non-negative ints (a shape or strides), checked without recursing into anything."""
    if not isinstance(v, tuple) or len(v) > MAX_DIMS:
        raise ModelFormatError(f"{what} must be a tuple of at most {MAX_DIMS} ints, found {_kind(v)}")
    for d in v:
        if not _is_int(d) or d < 0 or d >= 1 << 48:
            raise ModelFormatError(f"{what} holds {_kind(d)}, not a dimension")
    return v


def _rebuild_tensor(args: tuple) -> TensorRef:
    """torch._utils._rebuild_tensor(storage, storage_offset, size, stride)."""
    if len(args) != 4:
        raise ModelFormatError(f"_rebuild_tensor takes 4 arguments, got {len(args)}")
    storage, offset, size, stride = args
    if not isinstance(storage, StorageRef):
        raise ModelFormatError(f"_rebuild_tensor: first argument is {_kind(storage)}, not a storage")
    if not _is_int(offset) or offset < 0:
        raise ModelFormatError(f"_rebuild_tensor: storage offset is {_kind(offset)}")
    shape = _int_tuple(size, "tensor size")
    strides = _int_tuple(stride, "tensor stride")
    if len(shape) != len(strides):
        raise ModelFormatError(f"tensor size {list(shape)} and stride {list(strides)} differ in length")
    return TensorRef(storage, shape, strides, offset)


def _rebuild_tensor_v2(args: tuple) -> TensorRef:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])."""
    if len(args) not in (6, 7):
        raise ModelFormatError(f"_rebuild_tensor_v2 takes 6 or 7 arguments, got {len(args)}")
    return _rebuild_tensor(args[:4])  # requires_grad, backward hooks and metadata do not matter here


def _rebuild_parameter(args: tuple) -> TensorRef:
    """torch._utils._rebuild_parameter(data, requires_grad, backward_hooks): the parameter's tensor."""
    if len(args) != 3 or not isinstance(args[0], TensorRef):
        raise ModelFormatError("_rebuild_parameter expects (tensor, requires_grad, hooks)")
    return args[0]


def _ordered_dict(args: tuple) -> dict:
    """collections.OrderedDict(): an empty dict (items arrive through SETITEMS)."""
    if args != ():
        raise ModelFormatError("OrderedDict is only accepted with no arguments")
    return {}


def _build_allow_list() -> Dict[Tuple[str, str], object]:
    table: Dict[Tuple[str, str], object] = {
        ("torch._utils", "_rebuild_tensor_v2"): _Function("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
        ("torch._utils", "_rebuild_tensor"): _Function("torch._utils._rebuild_tensor", _rebuild_tensor),
        ("torch._utils", "_rebuild_parameter"): _Function("torch._utils._rebuild_parameter", _rebuild_parameter),
        ("collections", "OrderedDict"): _Function("collections.OrderedDict", _ordered_dict),
    }
    for cls, dtype in _STORAGE_DTYPES.items():
        table[("torch", cls)] = _StorageType(dtype)
    for name, dtype in _TORCH_DTYPES.items():
        table[("torch", name)] = _TorchDtype(dtype)
    return table


ALLOWED_GLOBALS = _build_allow_list()


def _kind(v: object) -> str:
    """Describe a value for an error message without printing (or recursing into) it."""
    if isinstance(v, (str, bytes)):
        return f"{type(v).__name__} {v[:40]!r}"
    if _is_int(v) or isinstance(v, (bool, float)) or v is None:
        return repr(v)
    if isinstance(v, _Function):
        return v.qualname
    return f"a {type(v).__name__}"


# ---- the machine -------------------------------------------------------------------------------------
class _Machine:
    """One run of the interpreter over one pickle. Use `run()` once."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.op_pos = 0
        self.stack: List[Any] = []
        self.marks: List[int] = []  # stack lengths at each open MARK
        self.memo: Dict[int, Any] = {}
        self.storages: Dict[str, StorageRef] = {}

    # -- helpers
    def fail(self, msg: str) -> ModelFormatError:
        return ModelFormatError(f"checkpoint pickle, byte {self.op_pos}: {msg}")

    def take(self, n: int) -> memoryview:
        if n > len(self.data) - self.pos:
            raise self.fail(f"truncated: needs {n} more bytes, {len(self.data) - self.pos} left")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def line(self) -> str:
        """A newline-terminated ASCII line (GLOBAL's operands), bounded in length."""
        end = bytes(self.data[self.pos:self.pos + MAX_GLOBAL_NAME + 1]).find(b"\n")
        if end < 0:
            raise self.fail("GLOBAL name is not terminated or is too long")
        raw = bytes(self.take(end + 1)[:-1])
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("GLOBAL name is not ASCII") from None

    def push(self, v: Any) -> None:
        if len(self.stack) >= MAX_STACK:
            raise self.fail(f"stack exceeds {MAX_STACK} values")
        self.stack.append(v)

    def pop(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.fail("stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.fail("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> List[Any]:
        if not self.marks:
            raise self.fail("no MARK to pop to")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def sized(self, n: int, what: str) -> memoryview:
        if n > MAX_STRING_BYTES:
            raise self.fail(f"{what} of {n} bytes exceeds the {MAX_STRING_BYTES}-byte limit")
        return self.take(n)

    def text(self, n: int) -> str:
        try:
            return str(self.sized(n, "string"), "utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise self.fail("string is not valid UTF-8") from None

    def memo_put(self, index: int, v: Any) -> None:
        if index not in self.memo and len(self.memo) >= MAX_MEMO:
            raise self.fail(f"memo exceeds {MAX_MEMO} entries")
        self.memo[index] = v

    def memo_get(self, index: int) -> None:
        if index not in self.memo:
            raise self.fail(f"memo entry {index} was never stored")
        self.push(self.memo[index])

    def key(self, k: Any) -> Any:
        """Dict keys must be plain scalars: hashing a deep tuple could exhaust the C stack."""
        if isinstance(k, (str, bytes, int, float)) or k is None:
            return k
        raise self.fail(f"dict key is {_kind(k)}; only strings and numbers are accepted")

    def dict_target(self, op: str) -> dict:
        d = self.top()
        if not isinstance(d, dict):
            raise self.fail(f"{op} on {_kind(d)}, not a dict")
        return d

    def list_target(self, op: str) -> list:
        lst = self.top()
        if not isinstance(lst, list):
            raise self.fail(f"{op} on {_kind(lst)}, not a list")
        return lst

    def set_items(self, d: dict, items: List[Any]) -> None:
        if len(items) % 2:
            raise self.fail("odd number of items for a dict")
        for i in range(0, len(items), 2):
            d[self.key(items[i])] = items[i + 1]

    def global_(self, module: str, name: str) -> None:
        v = ALLOWED_GLOBALS.get((module, name))
        if v is None:
            raise UnsafePickleError(
                f"the checkpoint's pickle asks for {module}.{name}, which is not a tensor type; refusing to "
                f"load it (nothing was imported or executed)")
        self.push(v)

    def persistent_load(self, pid: Any) -> StorageRef:
        """('storage', <torch.XStorage>, key, location, numel) -> StorageRef."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self.fail(f"persistent id is {_kind(pid)}, not a ('storage', ...) tuple")
        _, stype, key, _location, n = pid
        if not isinstance(stype, _StorageType):
            raise self.fail(f"persistent id names {_kind(stype)}, not a storage class")
        if not isinstance(key, str) or not key or len(key) > 64 or not (key.isascii() and key.isalnum()):
            raise self.fail(f"storage key {_kind(key)} is not a plain name")
        if not _is_int(n) or n < 0:
            raise self.fail(f"storage size {_kind(n)} is not a count")
        ref = StorageRef(key, stype.dtype, n)
        seen = self.storages.setdefault(key, ref)
        if seen != ref:
            raise self.fail(f"storage {key} is described twice, differently")
        return ref

    # -- the run
    def run(self) -> Any:
        ops = 0
        while True:
            ops += 1
            if ops > MAX_OPS:
                raise self.fail(f"more than {MAX_OPS} opcodes")
            self.op_pos = self.pos
            code = self.take(1)[0]
            handler = _DISPATCH.get(code)
            if handler is None:
                raise self.fail(f"opcode {bytes([code])!r} is not accepted in a checkpoint")
            if handler(self):
                break
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} bytes follow STOP")
        if self.marks or len(self.stack) != 1:
            raise self.fail("STOP with unbalanced stack")
        return self.stack[0]


# ---- opcode handlers: each returns True only for STOP -------------------------------------------------
def _op_proto(m: _Machine) -> None:
    v = m.take(1)[0]
    if not 2 <= v <= 5:
        raise m.fail(f"pickle protocol {v} is not supported")


def _op_frame(m: _Machine) -> None:
    if m.uint(8) > len(m.data) - m.pos:
        raise m.fail("FRAME is longer than the rest of the pickle (truncated?)")


def _op_stop(m: _Machine) -> bool:
    return True


def _op_mark(m: _Machine) -> None:
    if len(m.marks) >= MAX_MARK_DEPTH:
        raise m.fail(f"nesting deeper than {MAX_MARK_DEPTH} MARKs")
    m.marks.append(len(m.stack))


def _op_tuple_n(n: int) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        items = [m.pop() for _ in range(n)]
        m.push(tuple(reversed(items)))
    return op


def _op_tuple(m: _Machine) -> None:
    m.push(tuple(m.pop_mark()))


def _op_list(m: _Machine) -> None:
    m.push(m.pop_mark())


def _op_dict(m: _Machine) -> None:
    items = m.pop_mark()
    d: dict = {}
    m.set_items(d, items)
    m.push(d)


def _op_append(m: _Machine) -> None:
    v = m.pop()
    m.list_target("APPEND").append(v)


def _op_appends(m: _Machine) -> None:
    items = m.pop_mark()
    m.list_target("APPENDS").extend(items)


def _op_setitem(m: _Machine) -> None:
    v = m.pop()
    k = m.pop()
    m.set_items(m.dict_target("SETITEM"), [k, v])


def _op_setitems(m: _Machine) -> None:
    items = m.pop_mark()
    m.set_items(m.dict_target("SETITEMS"), items)


def _op_unicode(width: int) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        m.push(m.text(m.uint(width)))
    return op


def _op_bytes(width: int) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        m.push(bytes(m.sized(m.uint(width), "bytes")))
    return op


def _op_binint(m: _Machine) -> None:
    m.push(int.from_bytes(m.take(4), "little", signed=True))


def _op_uint(width: int) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        m.push(m.uint(width))
    return op


def _op_long1(m: _Machine) -> None:
    n = m.take(1)[0]
    m.push(int.from_bytes(m.take(n), "little", signed=True))


def _op_binfloat(m: _Machine) -> None:
    m.push(struct.unpack(">d", m.take(8))[0])


def _op_const(v: Any) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        m.push(v)
    return op


def _op_empty(factory: Callable[[], Any]) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        m.push(factory())
    return op


def _op_put(width: int) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        m.memo_put(m.uint(width), m.top())
    return op


def _op_memoize(m: _Machine) -> None:
    m.memo_put(len(m.memo), m.top())


def _op_get(width: int) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        m.memo_get(m.uint(width))
    return op


def _op_global(m: _Machine) -> None:
    module = m.line()
    name = m.line()
    m.global_(module, name)


def _op_stack_global(m: _Machine) -> None:
    name = m.pop()
    module = m.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise m.fail("STACK_GLOBAL needs two strings")
    m.global_(module, name)


def _op_reduce(m: _Machine) -> None:
    args = m.pop()
    func = m.pop()
    if not isinstance(func, _Function):
        raise UnsafePickleError(f"the checkpoint's pickle calls {_kind(func)}, which is not an allowed function")
    if not isinstance(args, tuple):
        raise m.fail(f"arguments of {func.qualname} are {_kind(args)}, not a tuple")
    m.push(func.impl(args))


def _op_build(m: _Machine) -> None:
    """BUILD sets an object's state. Accepted, and ignored, on dicts (an OrderedDict's `_metadata`) and
    tensors (a parameter's extra attributes); refused on anything else."""
    state = m.pop()
    obj = m.top()
    if not isinstance(obj, (dict, TensorRef)):
        raise m.fail(f"BUILD on {_kind(obj)}")
    if state is not None and not isinstance(state, (dict, tuple)):
        raise m.fail(f"BUILD with state {_kind(state)}")


def _op_binpersid(m: _Machine) -> None:
    m.push(m.persistent_load(m.pop()))


_DISPATCH: Dict[int, Callable[[_Machine], Any]] = {
    0x80: _op_proto,            # PROTO
    0x95: _op_frame,            # FRAME
    ord("."): _op_stop,         # STOP
    ord("("): _op_mark,         # MARK
    ord("}"): _op_empty(dict),  # EMPTY_DICT
    ord("]"): _op_empty(list),  # EMPTY_LIST
    ord(")"): _op_const(()),    # EMPTY_TUPLE
    0x85: _op_tuple_n(1),       # TUPLE1
    0x86: _op_tuple_n(2),       # TUPLE2
    0x87: _op_tuple_n(3),       # TUPLE3
    ord("t"): _op_tuple,        # TUPLE
    ord("d"): _op_dict,         # DICT
    ord("l"): _op_list,         # LIST
    ord("a"): _op_append,       # APPEND
    ord("e"): _op_appends,      # APPENDS
    ord("s"): _op_setitem,      # SETITEM
    ord("u"): _op_setitems,     # SETITEMS
    0x8C: _op_unicode(1),       # SHORT_BINUNICODE
    ord("X"): _op_unicode(4),   # BINUNICODE
    0x8D: _op_unicode(8),       # BINUNICODE8
    ord("C"): _op_bytes(1),     # SHORT_BINBYTES
    ord("B"): _op_bytes(4),     # BINBYTES
    0x8E: _op_bytes(8),         # BINBYTES8
    ord("J"): _op_binint,       # BININT
    ord("K"): _op_uint(1),      # BININT1
    ord("M"): _op_uint(2),      # BININT2
    0x8A: _op_long1,            # LONG1
    ord("G"): _op_binfloat,     # BINFLOAT
    ord("N"): _op_const(None),  # NONE
    0x88: _op_const(True),      # NEWTRUE
    0x89: _op_const(False),     # NEWFALSE
    ord("q"): _op_put(1),       # BINPUT
    ord("r"): _op_put(4),       # LONG_BINPUT
    0x94: _op_memoize,          # MEMOIZE
    ord("h"): _op_get(1),       # BINGET
    ord("j"): _op_get(4),       # LONG_BINGET
    ord("c"): _op_global,       # GLOBAL
    0x93: _op_stack_global,     # STACK_GLOBAL
    ord("R"): _op_reduce,       # REDUCE
    ord("b"): _op_build,        # BUILD
    ord("Q"): _op_binpersid,    # BINPERSID
}


# ---- public ------------------------------------------------------------------------------------------
def interpret(data: bytes) -> Any:
    """Run a pickle through the restricted interpreter and return its value (dicts, lists, tuples,
    scalars, StorageRef and TensorRef). Raises UnsafePickleError or ModelFormatError."""
    if len(data) > MAX_PICKLE_BYTES:
        raise ModelFormatError(f"checkpoint pickle is {len(data)} bytes, over the {MAX_PICKLE_BYTES}-byte limit")
    return _Machine(data).run()


def load_tensor_refs(data: bytes) -> Dict[str, TensorRef]:
    """Interpret a torch checkpoint's data.pkl, which must be a flat dict name -> tensor."""
    obj = interpret(data)
    if not isinstance(obj, dict):
        raise ModelFormatError(f"the checkpoint holds {_kind(obj)}, not a dict of tensors")
    out: Dict[str, TensorRef] = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise ModelFormatError(f"the checkpoint has a non-string key {_kind(name)}")
        if not isinstance(value, TensorRef):
            raise ModelFormatError(f"checkpoint entry {name!r} is {_kind(value)}, not a tensor "
                                   "(expected a plain state dict: name -> tensor)")
        out[name] = value
    return out
