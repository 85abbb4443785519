"""Loads the C library (librwkv_cpu) through cffi's ABI mode.

The declarations come from the public header itself (the block between CFFI-BEGIN and CFFI-END), so the
binding cannot drift from the library. cffi releases the GIL around every call into C, so other Python
threads run while a model evaluates.

Environment:
    RWKV_CPU_LIB   path of a librwkv_cpu build to use instead of the packaged one (e.g. a sanitizer build).
"""
from __future__ import annotations

import os
import sys

import cffi

from .errors import RwkvError, error_for_status

_HERE = os.path.dirname(os.path.abspath(__file__))


def _lib_name() -> str:
    if sys.platform == "darwin":
        return "librwkv_cpu.dylib"
    if sys.platform == "win32":
        return "rwkv_cpu.dll"
    return "librwkv_cpu.so"


def _find_header() -> str:
    for cand in (os.path.join(_HERE, "rwkv_cpu.h"),
                 os.path.join(_HERE, os.pardir, "csrc", "include", "rwkv_cpu.h")):
        if os.path.exists(cand):
            return cand
    raise ImportError("rwkv_cpu.h not found next to the package: reinstall with `pip install .`")


def _cdef_source(header_text: str) -> str:
    begin = header_text.index("/* CFFI-BEGIN */") + len("/* CFFI-BEGIN */")
    end = header_text.index("/* CFFI-END */")
    return header_text[begin:end]


def _load():
    ffi = cffi.FFI()
    with open(_find_header(), encoding="utf-8") as f:
        ffi.cdef(_cdef_source(f.read()))
    path = os.environ.get("RWKV_CPU_LIB") or os.path.join(_HERE, _lib_name())
    if not os.path.exists(path):
        raise ImportError(
            f"the rwkv_cpu C library was not found at {path}. Install the package with `pip install .` "
            "(it builds the library), or point RWKV_CPU_LIB at a build of it.")
    return ffi, ffi.dlopen(path)


ffi, lib = _load()


def last_error() -> str:
    return ffi.string(lib.rwkv_last_error()).decode("utf-8", "replace")


def check(status: int, context: str = "") -> None:
    """Raise the exception that matches a non-zero rwkv_status, with the library's message."""
    if status != 0:
        msg = last_error() or ffi.string(lib.rwkv_status_name(status)).decode()
        raise error_for_status(status, f"{context}: {msg}" if context else msg)


__all__ = ["ffi", "lib", "check", "last_error", "RwkvError"]
