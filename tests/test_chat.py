"""Chat: the turn format, the state carried across turns (each turn reads only its new tokens, counted), reset /
save / load, and `rwkv-cpu chat` driven through its stdin, Ctrl-C included."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rwkv_cpu
from rwkv_cpu import ChatSession, RwkvArgumentError
from rwkv_cpu.chat import clean_message


class CountingModel(rwkv_cpu.Model):
    """Counts every token the model reads."""

    read = 0

    def forward(self, tokens, state=None, **kw):
        self.read += int(np.asarray(tokens).size)
        return super().forward(tokens, state, **kw)


@pytest.fixture(scope="module")
def world(converted):
    return CountingModel(converted("random-5v2"), n_threads=1)


def test_each_turn_reads_only_its_new_tokens(world):
    tok = world.tokenizer
    world.read = 0
    chat = ChatSession(world, system="You are terse.", max_tokens=12, seed=5)
    system_tokens = len(tok.encode("System: You are terse.\n\n"))
    assert world.read == system_tokens == chat.n_tokens
    first = chat.ask("Hello, who are you?")
    after_first = world.read
    second = chat.ask("And what do you like?")
    new_prompt = len(tok.encode("User: And what do you like?\n\nAssistant:"))
    # the second turn read its prompt, its answer (each token once) and at most the closing separator, no more
    assert world.read - after_first == new_prompt + len(second.tokens) + second.extra_read == chat.last_read
    assert chat.n_tokens == world.read and chat.turns == 2
    # and the carried state is the state of the whole transcript read from scratch
    transcript = (tok.encode("System: You are terse.\n\n") + tok.encode("User: Hello, who are you?\n\nAssistant:")
                  + first.tokens + (tok.encode("\n\n") if first.extra_read else [])
                  + tok.encode("User: And what do you like?\n\nAssistant:") + second.tokens
                  + (tok.encode("\n\n") if second.extra_read else []))
    assert len(transcript) == chat.n_tokens
    _, ref = rwkv_cpu.Model.forward(world, transcript)
    # reading the transcript in one call takes the GEMM path (csrc/kernels/gemm.h), whose float sums run in
    # another order than decode's: equal to float rounding (measured 8e-6 at most), not bit for bit
    np.testing.assert_allclose(chat.state.to_numpy(), ref.to_numpy(), rtol=1e-5, atol=2e-5)


def test_one_random_stream_for_the_conversation(world):
    chat = ChatSession(world, max_tokens=4, seed=9, presence_penalty=2.0)
    first, second = chat.ask("a"), chat.ask("b")
    assert first.sampler is second.sampler is chat.sampler          # seeded once, not re-seeded each turn
    assert set(chat.sampler.occurrence()) <= set(second.tokens)     # the penalties start over each answer
    again = ChatSession(world, max_tokens=4, seed=9, presence_penalty=2.0)
    assert [again.ask("a").tokens, again.ask("b").tokens] == [first.tokens, second.tokens]   # reproducible


def test_answer_stops_at_the_turn_separator(world):
    chat = ChatSession(world, max_tokens=40, seed=1, logit_bias={261: 8.0})   # make "\n\n" likely
    gen = chat.ask("Hi")
    assert gen.stop_reason in ("stop_string", "stop_token") and "\n\n" not in gen.text
    if gen.stop_reason == "stop_string":
        assert gen.extra_read == 0 and gen.tokens[-1] == 261


def test_reset_save_load(world, tmp_path):
    chat = ChatSession(world, system="Be brief.", max_tokens=5, seed=2)
    start = chat.state.to_numpy()
    n0 = chat.n_tokens
    chat.ask("one")
    chat.ask("two")
    path = tmp_path / "conv.state"
    chat.save(path)
    saved, n_saved = chat.state.to_numpy(), chat.n_tokens
    world.read = 0
    chat.reset()
    assert world.read == 0                         # the system prompt is not read again
    assert np.array_equal(chat.state.to_numpy(), start) and chat.n_tokens == n0 and chat.turns == 0
    chat.load(path)
    assert np.array_equal(chat.state.to_numpy(), saved) and chat.n_tokens == n_saved and chat.turns == 2


def test_messages_are_cleaned():
    assert clean_message("  a\r\n\r\nb\n\n\nc \n") == "a\nb\nc"
    with pytest.raises(RwkvArgumentError, match="empty"):
        ChatSession(rwkv_cpu.Model(n_threads=1), max_tokens=3).ask(" \n\n ")


# ---- the command line, through stdin ------------------------------------------------------------------------------
def run_chat(*args, input_text: str, timeout=240):
    return subprocess.run([sys.executable, "-m", "rwkv_cpu.cli", "chat", "--threads", "1", *args], input=input_text,
                          capture_output=True, text=True, timeout=timeout, cwd=os.path.dirname(__file__))


STATS = re.compile(r"\[(\d+) tokens at [\d.]+ tok/s(?: \(stopped\))?; read (\d+) new tokens \((\d+) of prompt at "
                   r"\d+ tok/s\); (\d+) tokens in the state\]")


def test_cli_chat_two_turns_through_stdin(converted, tmp_path):
    model = converted("random-5v2")
    state_file = tmp_path / "c.state"
    p = run_chat(model, "-n", "10", "--seed", "3", "-s", "You are kind.",
                 input_text=f"Hello!\nHow are you today?\n/save {state_file}\n/reset\n/load {state_file}\n"
                            "/bogus\n/help\n/quit\nnever read\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("Assistant:") == 2 and "User: How are you today?" in p.stdout
    assert "never read" not in p.stdout
    turns = [tuple(map(int, m)) for m in STATS.findall(p.stderr)]
    assert len(turns) == 2, p.stderr
    tok = rwkv_cpu.Model(model, n_threads=1).tokenizer
    system = len(tok.encode("System: You are kind.\n\n"))
    (gen1, read1, prompt1, total1), (gen2, read2, prompt2, total2) = turns
    assert prompt1 == len(tok.encode("User: Hello!\n\nAssistant:"))
    assert prompt2 == len(tok.encode("User: How are you today?\n\nAssistant:"))     # only the new message
    assert total1 == system + read1 and total2 == total1 + read2
    assert read2 - prompt2 - gen2 in (0, 1)        # and the answer, plus "\n\n" if it did not end with one
    assert f"saved 2 turns, {total2} tokens" in p.stderr
    assert f"conversation reset; {system} tokens" in p.stderr
    assert f"loaded {state_file}: 2 turns, {total2} tokens" in p.stderr
    assert "unknown command /bogus" in p.stderr and "/reset" in p.stderr
    assert state_file.exists()


def test_cli_chat_refuses_a_state_of_another_model(converted, tmp_path):
    other = tmp_path / "tiny.state"
    rwkv_cpu.Model(n_threads=1).new_state().save(other)
    p = run_chat(converted("random-5v2"), "-n", "3", input_text=f"/load {other}\nhi\n")
    assert p.returncode == 0
    assert "/load failed" in p.stderr and "another model" in p.stderr
    assert p.stdout.count("Assistant:") == 1          # and it went on


def test_cli_chat_bad_arguments():
    p = run_chat("--top-p", "0", input_text="hi\n")
    assert p.returncode == 1 and "top_p" in p.stderr


def test_ctrl_c_stops_the_answer_not_the_program(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "rwkv_cpu.cli", "chat", "--threads", "1", "-n", "100000000"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(__file__))
    seen = []
    started = threading.Event()

    def drain():
        while True:
            chunk = proc.stdout.read(1)
            if not chunk:
                return
            seen.append(chunk)
            if not started.is_set() and "Assistant:" in "".join(seen[-20:]):
                started.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc.stdin.write("tell me a long story\n")
        proc.stdin.flush()
        assert started.wait(120), "the answer never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        saved = tmp_path / "after.state"
        proc.stdin.write(f"/save {saved}\n/quit\n")
        proc.stdin.close()
        rc = proc.wait(120)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err
    assert "(stopped)" in err and saved.exists()
