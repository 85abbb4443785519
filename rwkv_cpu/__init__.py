"""rwkv_cpu: run RWKV language models on the CPU.

    import rwkv_cpu
    model = rwkv_cpu.Model("model.rwkv")            # rwkv_cpu.Model() loads the bundled tiny model
    logits, state = model.forward(model.tokenizer.encode("Hello"))
    rwkv_cpu.convert.convert("model.pth", "model.rwkv", dtype="f16")   # checkpoints -> .rwkv
    for piece in model.generate("Once upon a time", max_tokens=50, stop=["\n\n"]):
        print(piece, end="", flush=True)
    state.save("s.state"); state = model.load_state("s.state")   # state files (refused for another model)
    chat = rwkv_cpu.ChatSession(model, system="...")             # chat; each turn reads only its new tokens
    rwkv_cpu.evaluate.perplexity(model, text)                    # evaluation (also LAMBADA, model comparison)

The Python API is described in docs/PYTHON_API.md.
"""
from .errors import (ModelFormatError, RwkvArgumentError, RwkvError, RwkvIOError, RwkvMemoryError,
                     StateMismatchError, TokenError, UnsafePickleError, UnsupportedModelError)
from .model import BUNDLED_MODEL, Model, State, TensorInfo
from .sampling import Sampler
from .cache import PrefixCache
from .generation import Generation
from .chat import ChatSession
from . import convert  # noqa: E402  (the converter package: rwkv_cpu.convert.convert(src, out, ...))
from . import evaluate  # noqa: E402,F401  (rwkv_cpu.evaluate.perplexity(...), lambada(...))

__version__ = "0.1.0"


def __getattr__(name):
    # The tokenizer module is imported lazily so that `import rwkv_cpu` stays light.
    if name == "Tokenizer":
        from .tokenizer import Tokenizer
        return Tokenizer
    raise AttributeError(f"module 'rwkv_cpu' has no attribute {name!r}")


__all__ = ["Model", "State", "TensorInfo", "Sampler", "PrefixCache", "Generation", "ChatSession", "Tokenizer", "BUNDLED_MODEL", "RwkvError",
           "ModelFormatError", "UnsupportedModelError", "UnsafePickleError", "TokenError", "StateMismatchError",
           "RwkvIOError", "RwkvArgumentError", "RwkvMemoryError", "__version__"]
