"""The documentation's examples run: every `>>>` example of docs/PYTHON_API.md and of the modules' docstrings
(doctest, `...` matching any text), against the bundled tiny model."""
from __future__ import annotations

import doctest
import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def python_blocks(markdown: str) -> str:
    """The ```python blocks of a page, as one doctest text (the fences would otherwise read as expected output)."""
    return "\n\n".join(re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M))


def run_doctest(text: str, name: str) -> None:
    test = doctest.DocTestParser().get_doctest(text, {}, name, name, 0)
    assert test.examples, f"{name} has no examples"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)


def test_python_api_page():
    with open(os.path.join(ROOT, "docs", "PYTHON_API.md"), encoding="utf-8") as f:
        run_doctest(python_blocks(f.read()), "docs/PYTHON_API.md")


@pytest.mark.parametrize("module", ["rwkv_cpu.sampling", "rwkv_cpu.cache", "rwkv_cpu.generation", "rwkv_cpu.chat",
                                    "rwkv_cpu.evaluate", "rwkv_cpu.model"])
def test_module_docstrings(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=FLAGS, verbose=False, report=False)
    assert result.attempted > 0 and result.failed == 0, f"{module}: {result.failed} of {result.attempted} failed"
