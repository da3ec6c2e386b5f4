"""Concurrent episodes share one generator in batches; errors reach every waiting episode."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from swerl.inference import Completion, SamplingParams
from swerl.inference.batching import BatchingGenerator
from swerl.inference.replay import ReplayGenerator


class Echo:
    """A real (if trivial) generator: answers each prompt with its reverse, slowly."""

    name = "echo"
    has_logprobs = True

    def __init__(self):
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def generate(self, prompts, params):
        with self.lock:
            self.calls.append(len(prompts))
        time.sleep(0.05)
        return [Completion(p[::-1], [0.0] * len(p), "stop") for p in prompts]


def test_concurrent_requests_are_batched_and_answered_in_order():
    echo = Echo()
    gen = BatchingGenerator(echo, max_batch=8, max_wait_s=0.02)
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: gen.complete([i, i + 1], SamplingParams()), range(16)))
    gen.close()
    assert [o.token_ids for o in outs] == [[i + 1, i] for i in range(16)]
    assert max(echo.calls) > 1 and sum(echo.calls) == 16 and len(echo.calls) < 16


def test_generator_errors_reach_every_waiting_episode():
    class Broken(Echo):
        def generate(self, prompts, params):
            raise RuntimeError("engine died")

    gen = BatchingGenerator(Broken(), max_batch=4)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(gen.complete, [1], SamplingParams()) for _ in range(4)]
        for f in futures:
            with pytest.raises(RuntimeError, match="engine died"):
                f.result(timeout=10)
    gen.close()


def test_replay_emits_scripted_messages_then_fails():
    gen = ReplayGenerator(["ab", "c"], encode=lambda s: [ord(ch) for ch in s], end_of_turn_id=0)
    assert gen.generate([[1]], [SamplingParams()])[0].token_ids == [97, 98, 0]
    cut = gen.generate([[1]], [SamplingParams(max_tokens=1)])[0]
    assert (cut.token_ids, cut.finish_reason) == ([99], "length")
    with pytest.raises(RuntimeError, match="exhausted after 2 messages"):
        gen.generate([[1]], [SamplingParams()])


def test_announced_episodes_are_waited_for_so_batches_stay_full():
    """Episodes alternating generation and (uneven) sandbox time: with `episode()` every batch
    holds all live episodes instead of splitting them into alternating groups."""
    echo = Echo()
    gen = BatchingGenerator(echo, max_batch=8, max_wait_s=0.5)

    def episode(i: int) -> None:
        with gen.episode():
            for turn in range(4):
                gen.complete([i, turn], SamplingParams())
                time.sleep(0.01 * (i % 4))  # the sandbox call, longer for some episodes

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(episode, range(4)))
    gen.close()
    # an episode that starts before the others announce themselves runs one batch ahead, so
    # the first and the last batch may be partial; every other batch holds all four
    assert sum(echo.calls) == 16 and len(echo.calls) <= 6
    assert all(n == 4 for n in echo.calls[1:-1]), echo.calls
