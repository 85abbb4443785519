"""The C library as a whole: every declared function exported, version, CPU features, kernel choice."""
from __future__ import annotations

import re

import rwkv_cpu
from rwkv_cpu import _ffi


def _declared_functions():
    with open(_ffi._find_header(), encoding="utf-8") as f:
        block = _ffi._cdef_source(f.read())
    return sorted(set(re.findall(r"\b(rwkv_[a-z0-9_]+)\s*\(", block)))


def test_every_declared_function_is_exported():
    names = _declared_functions()
    assert len(names) > 20
    missing = []
    for name in names:
        try:
            getattr(_ffi.lib, name)
        except AttributeError:
            missing.append(name)
    assert not missing, f"declared in rwkv_cpu.h but not exported: {missing}"


def test_version_matches_package():
    assert _ffi.ffi.string(_ffi.lib.rwkv_version()).decode() == rwkv_cpu.__version__


def test_names():
    lib, ffi = _ffi.lib, _ffi.ffi
    assert ffi.string(lib.rwkv_arch_name(52)) == b"v5.2"
    assert ffi.string(lib.rwkv_dtype_name(1)) == b"f16"
    assert ffi.string(lib.rwkv_status_name(2)) == b"format error"
    assert ffi.string(lib.rwkv_kernel_name()) in (b"scalar", b"avx2", b"avx2-vnni", b"avx512", b"avx512-amx", b"neon")
    assert isinstance(ffi.string(lib.rwkv_cpu_features()), bytes)


def test_null_arguments_are_errors_not_crashes():
    lib, ffi = _ffi.lib, _ffi.ffi
    assert lib.rwkv_model_load(ffi.NULL, 1, ffi.NULL) != 0
    assert lib.rwkv_model_get_info(ffi.NULL, ffi.NULL) != 0
    assert lib.rwkv_state_new(ffi.NULL, ffi.NULL) != 0
    assert lib.rwkv_eval(ffi.NULL, ffi.NULL, ffi.NULL, 0, ffi.NULL, 0) != 0
    assert lib.rwkv_eval_batch(ffi.NULL, ffi.NULL, ffi.NULL, 0, ffi.NULL) != 0
    assert lib.rwkv_state_copy(ffi.NULL, ffi.NULL) != 0
    assert lib.rwkv_state_clone(ffi.NULL, ffi.NULL) != 0
    lib.rwkv_model_free(ffi.NULL)
    lib.rwkv_state_free(ffi.NULL)
    lib.rwkv_tokenizer_free(ffi.NULL)
