"""A progress bar on stderr, drawn only when stderr is a terminal (no dependency; one line, redrawn in place).

    with Progress(total=1000, desc="perplexity", unit="tok") as bar:
        for chunk in chunks:
            ...
            bar.update(len(chunk), info=f"ppl {ppl:.2f}")
"""
from __future__ import annotations

import re
import shutil
import sys
import time
from typing import Callable, Optional, TextIO


class Progress:
    """A bar: `desc [#####.....] 42% 420/1000 tok 35.1 tok/s eta 17s info`. Off (does nothing) when `enabled` is
    False, or when None (the default) and the stream is not a terminal."""

    def __init__(self, total: int, desc: str = "", unit: str = "", enabled: Optional[bool] = None,
                 stream: Optional[TextIO] = None, min_interval: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream) if enabled is None else bool(enabled)
        self.total = max(int(total), 0)
        self.desc, self.unit = desc, unit
        self.n = 0
        self.info = ""
        self.start = time.perf_counter()
        self._last = 0.0
        self._min_interval = min_interval
        self._width = 0

    def __enter__(self) -> "Progress":
        self.draw(force=True)
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def update(self, n: int = 1, info: Optional[str] = None) -> None:
        self.n += n
        if info is not None:
            self.info = info
        self.draw()

    def set(self, n: int, info: Optional[str] = None) -> None:
        self.n = n
        if info is not None:
            self.info = info
        self.draw()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        frac = min(self.n / self.total, 1.0) if self.total else 0.0
        cols = shutil.get_terminal_size((80, 20)).columns
        bar_w = max(10, min(30, cols - 60))
        filled = int(frac * bar_w)
        eta = (self.total - self.n) / rate if rate > 0 and self.total else 0.0
        unit = f" {self.unit}" if self.unit else ""
        text = (f"{self.desc} [{'#' * filled}{'.' * (bar_w - filled)}] {frac * 100:3.0f}% {self.n}/{self.total}"
                f"{unit} {rate:.1f}{unit}/s eta {_duration(eta)}")
        if self.info:
            text += f"  {self.info}"
        return text[:max(cols - 1, 20)]

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < self._min_interval and self.n < self.total:
            return
        self._last = now
        text = self.line()
        pad = max(self._width - len(text), 0)
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False


_STEP = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)$")


def line_progress(desc: str, stream: Optional[TextIO] = None) -> Callable[[str], None]:
    """A progress callback for the converter's "[n/N] what" lines: on a terminal, one bar redrawn in place (the
    text after the count as its info); elsewhere each line as it is."""
    stream = stream if stream is not None else sys.stderr
    if not _isatty(stream):
        def plain(line: str) -> None:
            print(line, file=stream, flush=True)
        return plain
    state = {"bar": None}

    def report(line: str) -> None:
        m = _STEP.match(line)
        if not m:
            print(line, file=stream, flush=True)
            return
        n, total, info = int(m.group(1)), int(m.group(2)), m.group(3)
        bar = state["bar"]
        if bar is None:
            bar = state["bar"] = Progress(total, desc, "tensors", enabled=True, stream=stream)
        bar.set(n, info)
        if n >= total:
            bar.close()
            state["bar"] = None
    return report


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _duration(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


__all__ = ["Progress", "line_progress"]
