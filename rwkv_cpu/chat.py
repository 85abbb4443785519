"""Chat with a model: the RWKV World turn format, the state carried across turns, and `rwkv-cpu chat`.

    >>> import rwkv_cpu
    >>> chat = rwkv_cpu.ChatSession(rwkv_cpu.Model(), system="You are a poet.", max_tokens=8, seed=0)
    >>> reply = chat.ask("Hello!")          # reads "User: Hello!\\n\\nAssistant:", then generates the answer
    >>> prompt = chat.model.tokenizer.encode("User: Hello!\\n\\nAssistant:")
    >>> chat.turns, chat.last_read == len(prompt) + len(reply.tokens) + reply.extra_read
    (1, True)

The conversation is the text the World models were trained on (reference doc section 8):

    System: <system prompt>\\n\\nUser: <message>\\n\\nAssistant: <answer>\\n\\nUser: ...

An answer stops at "\\n\\n" (the turn separator) or at end of text (id 0). The state has then read everything up
to the end of the answer, and the next turn reads only "User: <message>\\n\\nAssistant:". An answer that did not
end with "\\n\\n" (max_tokens, end of text, Ctrl-C) gets one read after it, so the format stays intact.
A message's blank lines are collapsed to single newlines, since "\\n\\n" would end the turn (as ChatRWKV does).

`rwkv-cpu chat [MODEL]` reads messages from the terminal or from a pipe (one message per line) and understands
/reset, /save FILE, /load FILE, /help and /quit. Ctrl-C stops an answer; at the prompt it quits.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
from typing import Callable, Optional

from .errors import RwkvArgumentError, RwkvError

# ChatRWKV's chat settings (API_DEMO_CHAT.py): temperature 1.0, top_p 0.3, presence 0.5, frequency 0.5, decay 0.996
CHAT_SAMPLING = {"temperature": 1.0, "top_p": 0.3, "presence_penalty": 0.5, "frequency_penalty": 0.5,
                 "penalty_decay": 0.996}
TURN_SEPARATOR = "\n\n"

HELP = """commands:
  /reset        start the conversation again (keeps the system prompt)
  /save FILE    save the conversation state to FILE
  /load FILE    continue a conversation saved with /save
  /help         this help
  /quit         leave (also Ctrl-D; Ctrl-C stops an answer)"""


def clean_message(text: str) -> str:
    """A user message as it goes into the conversation: no CR, no blank lines (they would end the turn)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return re.sub(r"\n\s*\n+", "\n", text)


class ChatSession:
    """A conversation whose state is carried from turn to turn; each turn reads only its new tokens.

    Args:
        model: the Model.
        system: an optional system prompt, read once at the start (and kept for reset()).
        user, assistant: the speaker names (World models: "User" and "Assistant").
        max_tokens: the longest answer.
        sampling: Sampler keyword arguments; defaults are ChatRWKV's chat settings (CHAT_SAMPLING).
    """

    def __init__(self, model, system: Optional[str] = None, *, user: str = "User", assistant: str = "Assistant",
                 max_tokens: int = 1000, **sampling):
        from .generation import make_sampler
        self.model = model
        self.user, self.assistant = user, assistant
        self.system = clean_message(system) if system else None
        self.max_tokens = max_tokens
        self.sampling = {**CHAT_SAMPLING, **sampling}
        # one sampler for the whole conversation: its random generator runs on from turn to turn (one seed, not
        # the same draws each turn); its penalty history starts over with each answer, as in ChatRWKV
        self.sampler = make_sampler(model, None, dict(self.sampling))
        self.stop_tokens = [] if model.tokenizer.kind == "bytes" else [0]
        self.n_tokens = 0          # tokens the state has read
        self.turns = 0
        self.last_read = 0         # tokens read by the last turn (its prompt, answer and separator)
        self.state = model.new_state()
        if self.system:
            self._read(f"System: {self.system}{TURN_SEPARATOR}")
        self._initial = (self.state.copy(), self.n_tokens)

    def _read(self, text: str) -> int:
        ids = self.model.tokenizer.encode(text)
        if ids:
            self.model.forward(ids, self.state)
            self.n_tokens += len(ids)
        return len(ids)

    def ask(self, message: str, callback: Optional[Callable[[str], None]] = None,
            should_stop: Optional[Callable[[], bool]] = None):
        """Send a message; generate the answer (callback(piece) as it comes; should_stop() is polled between
        pieces). Returns the Generation, with `.extra_read`: tokens read after it to close the turn."""
        message = clean_message(message)
        if not message:
            raise RwkvArgumentError("the message is empty")
        prompt = self.model.tokenizer.encode(f"{self.user}: {message}{TURN_SEPARATOR}{self.assistant}:")
        self.sampler.reset()
        gen = self.model.generate(prompt, self.max_tokens, state=self.state, stop=TURN_SEPARATOR,
                                  stop_tokens=self.stop_tokens, sampler=self.sampler)
        try:
            for piece in gen:
                if callback is not None:
                    callback(piece)
                if should_stop is not None and should_stop():
                    break
        finally:
            gen.close()
        self.n_tokens += len(prompt) + len(gen.tokens)
        # end the turn with the separator if the answer did not (the model stopped otherwise, or was stopped)
        gen.extra_read = 0 if gen.stop_reason == "stop_string" else self._read(TURN_SEPARATOR)
        self.last_read = len(prompt) + len(gen.tokens) + gen.extra_read
        self.turns += 1
        return gen

    def reset(self) -> None:
        """Back to the start (after the system prompt, which is not read again)."""
        state, n = self._initial
        self.state = state.copy()
        self.n_tokens, self.turns, self.last_read = n, 0, 0

    def save(self, path) -> None:
        meta = {"kind": "chat", "model": os.path.basename(self.model.path), "turns": self.turns,
                "n_tokens": self.n_tokens, "user": self.user, "assistant": self.assistant}
        self.state.save(path, meta=meta)

    def load(self, path) -> None:
        state = self.model.load_state(path)
        self.state = state
        self.turns = int(state.meta.get("turns", 0)) if isinstance(state.meta.get("turns"), int) else 0
        n = state.meta.get("n_tokens")
        self.n_tokens = n if isinstance(n, int) else 0
        self.last_read = 0


# ---- the command line ----------------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser("chat", help="chat with a model (User:/Assistant: turns, state kept across turns)",
                       description="Chat in the RWKV World format. Messages come from the terminal, or one per line "
                                   "from a pipe. Commands: /reset, /save FILE, /load FILE, /help, /quit.")
    p.add_argument("model", nargs="?", help="model file (.rwkv); default: the bundled tiny model")
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("--system-file", help="read the system prompt from a file")
    p.add_argument("--load", metavar="FILE", help="start from a conversation state saved with /save")
    p.add_argument("-n", "--max-tokens", type=int, default=1000, help="longest answer (default 1000)")
    p.add_argument("-t", "--temperature", type=float, default=CHAT_SAMPLING["temperature"])
    p.add_argument("--top-p", type=float, default=CHAT_SAMPLING["top_p"])
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--presence-penalty", type=float, default=CHAT_SAMPLING["presence_penalty"])
    p.add_argument("--frequency-penalty", type=float, default=CHAT_SAMPLING["frequency_penalty"])
    p.add_argument("--penalty-decay", type=float, default=CHAT_SAMPLING["penalty_decay"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--user", default="User", help="the user's name in the conversation (default User)")
    p.add_argument("--assistant", default="Assistant", help="the model's name (default Assistant)")
    p.add_argument("--threads", type=int, default=0, help="threads (default: physical cores)")
    p.set_defaults(func=cmd_chat)


class _Interrupt:
    """Ctrl-C during an answer sets a flag (the answer stops after the current token) instead of raising."""

    def __init__(self):
        self.flag = False
        self._old = None

    def __enter__(self):
        self.flag = False
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.flag = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        return False


def cmd_chat(args) -> int:
    from .model import Model
    system = args.system
    if args.system_file:
        with open(args.system_file, encoding="utf-8") as f:
            system = f.read()
    sampling = dict(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                    presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                    penalty_decay=args.penalty_decay, seed=args.seed)
    if args.max_tokens < 1:
        raise RwkvArgumentError("--max-tokens must be >= 1")
    from .sampling import Sampler
    Sampler(**{k: v for k, v in sampling.items()})          # bad values are reported before loading anything
    model = Model(args.model, n_threads=args.threads)
    chat = ChatSession(model, system, user=args.user, assistant=args.assistant, max_tokens=args.max_tokens,
                       **sampling)
    if args.load:
        chat.load(args.load)
    tty = sys.stdin.isatty()
    out, err = sys.stdout, sys.stderr
    name = os.path.basename(model.path)
    print(f"[chat with {name}: RWKV {model.arch}, {model.n_layer} layers, n_embd {model.n_embd}; "
          f"{chat.n_tokens} tokens in the state; /help for commands]", file=err)
    interrupt = _Interrupt()
    while True:
        try:
            line = input(f"{args.user}: ") if tty else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            print(file=err)
            return 0
        if not tty and not line:
            return 0                                         # end of the piped input
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("/"):
            if not _command(chat, line, out, err):
                return 0
            continue
        if not tty:
            out.write(f"{args.user}: {line}\n")
        out.write(f"{args.assistant}:")
        out.flush()

        def show(piece: str) -> None:
            out.write(piece)
            out.flush()

        with interrupt:
            gen = chat.ask(line, callback=show, should_stop=lambda: interrupt.flag)
        stopped = " (stopped)" if interrupt.flag else ""
        out.write("\n\n" if not gen.text.endswith("\n") else "\n")
        out.flush()
        print(f"[{len(gen.tokens)} tokens at {gen.tokens_per_second:.1f} tok/s{stopped}; read {chat.last_read} new "
              f"tokens ({gen.n_prompt_tokens} of prompt at "
              f"{gen.n_prompt_tokens / gen.prompt_seconds if gen.prompt_seconds > 0 else 0:.0f} tok/s); "
              f"{chat.n_tokens} tokens in the state]", file=err, flush=True)


def _command(chat: ChatSession, line: str, out, err) -> bool:
    """Run a /command; False means quit."""
    cmd, _, arg = line.strip().partition(" ")
    arg = arg.strip()
    if cmd in ("/quit", "/exit", "/q"):
        return False
    if cmd == "/help":
        print(HELP, file=err)
    elif cmd == "/reset":
        chat.reset()
        print(f"[conversation reset; {chat.n_tokens} tokens in the state]", file=err)
    elif cmd in ("/save", "/load"):
        if not arg:
            print(f"[{cmd} needs a file name]", file=err)
            return True
        try:
            if cmd == "/save":
                chat.save(arg)
                print(f"[saved {chat.turns} turns, {chat.n_tokens} tokens, to {arg}]", file=err)
            else:
                chat.load(arg)
                print(f"[loaded {arg}: {chat.turns} turns, {chat.n_tokens} tokens]", file=err)
        except (RwkvError, OSError) as e:
            print(f"[{cmd} failed: {e}]", file=err)
    else:
        print(f"[unknown command {cmd}; /help lists them]", file=err)
    return True


__all__ = ["ChatSession", "CHAT_SAMPLING", "clean_message", "add_parser"]
