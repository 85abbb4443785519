"""Nothing lost (docs/SECURITY.md, "Atomic writes"): the converter and State.save write a temporary file beside
the output, fsync it, check it, and only then rename it over the output. So a failed, interrupted or killed
write never leaves a partial file under the output name (an old file there is kept), and a full disk is a
clear error. The disk is "filled" with RLIMIT_FSIZE in a subprocess: a write past the limit fails with EFBIG,
as one past the end of a full disk fails with ENOSPC (both are OSErrors from write())."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import rwkv_cpu
from rwkv_cpu.convert import writer
from rwkv_cpu.errors import ModelFormatError

from conftest import fixture_dir

TINY_PTH = os.path.join(fixture_dir("tiny-5v2-730K"), "model.pth")

# Runs the snippet with file writes capped at LIMIT bytes (SIGXFSZ ignored, so write() fails with EFBIG).
PRELUDE = textwrap.dedent("""
    import os, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    LIMIT = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
""")


def _run_limited(code: str, limit: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code), str(limit), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("existing", [False, True])
def test_conversion_on_a_full_disk(tmp_path, existing):
    out = tmp_path / "model.rwkv"
    if existing:
        out.write_bytes(b"previous model")
    r = _run_limited("""
        from rwkv_cpu.convert import main
        sys.exit(main([sys.argv[2], sys.argv[3], "--quiet"]))
    """, 200_000, TINY_PTH, str(out))
    assert r.returncode != 0
    assert "File too large" in r.stderr and str(out) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert os.listdir(tmp_path) == (["model.rwkv"] if existing else [])
    if existing:
        assert out.read_bytes() == b"previous model"


def test_conversion_fits_under_a_limit_just_above_its_size(tmp_path):
    """The same command succeeds when the limit allows the file: the failure above is the disk, not the limit."""
    ref = tmp_path / "ref.rwkv"
    rwkv_cpu.convert.convert(TINY_PTH, str(ref), progress=False)
    out = tmp_path / "model.rwkv"
    r = _run_limited("""
        from rwkv_cpu.convert import convert
        convert(sys.argv[2], sys.argv[3], progress=False)
    """, os.path.getsize(ref) + 1, TINY_PTH, str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size == ref.stat().st_size   # (the metadata differs: it records the conversion time)
    assert rwkv_cpu.Model(out, n_threads=1).n_params == rwkv_cpu.Model(ref, n_threads=1).n_params


def test_killed_conversion_never_leaves_a_partial_output(tmp_path):
    """SIGKILL half way (nothing can clean up): the output name does not exist; only the temp file remains."""
    out = tmp_path / "model.rwkv"
    code = """
        import os, signal, sys
        from rwkv_cpu.convert import convert, writer
        real, n = writer.write_tensor, [0]
        def dying(f, slot):
            n[0] += 1
            if n[0] == 40:
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real(f, slot)
        writer.write_tensor = dying
        convert(sys.argv[1], sys.argv[2], progress=False)
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), TINY_PTH, str(out)], capture_output=True,
                       timeout=120)
    assert r.returncode == -signal.SIGKILL
    assert not out.exists()
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(".model.rwkv.") and left[0].endswith(".tmp"), left


def test_a_file_that_fails_verification_is_not_kept(tmp_path, monkeypatch):
    """A writer bug that produced a file the library refuses (here: a header naming another architecture) is
    caught before the rename."""
    real = writer.encode_header

    def wrong_arch(layout):
        h = bytearray(real(layout))
        h[16:20] = (60).to_bytes(4, "little")   # v6: its tensors are not in a v5.2 file
        return bytes(h)

    monkeypatch.setattr(writer, "encode_header", wrong_arch)
    out = tmp_path / "model.rwkv"
    out.write_bytes(b"previous model")
    with pytest.raises(ModelFormatError, match="failed verification.*tensor .* is missing"):
        rwkv_cpu.convert.convert(TINY_PTH, str(out), progress=False)
    assert os.listdir(tmp_path) == ["model.rwkv"] and out.read_bytes() == b"previous model"


@pytest.mark.parametrize("existing", [False, True])
def test_state_save_on_a_full_disk(tmp_path, existing):
    path = tmp_path / "chat.state"
    if existing:
        path.write_bytes(b"old state")
    r = _run_limited("""
        import rwkv_cpu
        m = rwkv_cpu.Model(n_threads=1)
        _, s = m.forward([1, 2, 3])
        try:
            s.save(sys.argv[2])
        except rwkv_cpu.RwkvIOError as e:
            print("refused:", e)
            sys.exit(3)
    """, 4096, str(path))
    assert r.returncode == 3, r.stderr
    assert "cannot write" in r.stdout and "File too large" in r.stdout, r.stdout
    assert os.listdir(tmp_path) == (["chat.state"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old state"


def test_state_save_replaces_atomically_under_a_reader(tmp_path):
    """A reader holding the old file open keeps reading the old bytes: save renames, never rewrites in place."""
    m = rwkv_cpu.Model(n_threads=1)
    path = tmp_path / "s.state"
    _, a = m.forward([1, 2, 3])
    a.save(path)
    with open(path, "rb") as f:
        _, b = m.forward([4, 5, 6])
        b.save(path)
        old = f.read()
    assert old == a.to_bytes() and path.read_bytes() == b.to_bytes()
    assert os.listdir(tmp_path) == ["s.state"]
