"""Serve many concurrent episodes from one batched generator.

Episodes run in threads (their sandbox calls block on I/O); each asks for one completion at a
time. `BatchingGenerator` collects the requests that arrive while the generator is busy and runs
them as one batch, so generation sees batches while sandboxes execute. Episodes that announce
themselves (`with gen.episode(): ...`, as `run_rollouts` does) let it wait, up to `max_wait_s`
after the first request, until every live episode has asked: otherwise the episodes split into
two groups that alternate (one in the batch, the other in its sandbox) and batches stay half
full. Without announced episodes it waits `max_wait_s` for more requests only while they keep
arriving.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

from swerl.inference.base import Completion, Generator, SamplingParams


class BatchingGenerator:
    def __init__(self, generator: Generator, *, max_batch: int = 16, max_wait_s: float = 0.05):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.generator = generator
        self.name = generator.name
        self.has_logprobs = generator.has_logprobs
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batch_sizes: list[int] = []  # for benchmarks and tests: how batching went
        self.busy_s = 0.0  # time spent inside the generator
        self._live = 0  # announced episodes in flight
        self._live_lock = threading.Lock()
        self._queue: queue.Queue[tuple[list[int], SamplingParams, Future] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="swerl-generator", daemon=True)
        self._worker.start()

    @contextlib.contextmanager
    def episode(self) -> Iterator[None]:
        """Announce an episode for its duration (batches then wait for all live episodes)."""
        with self._live_lock:
            self._live += 1
        try:
            yield
        finally:
            with self._live_lock:
                self._live -= 1

    def complete(self, prompt: list[int], params: SamplingParams) -> Completion:
        """One completion; blocks the calling episode until its batch is done."""
        future: Future[Completion] = Future()
        self._queue.put((prompt, params, future))
        return future.result()

    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        futures = []
        for prompt, p in zip(prompts, params, strict=True):
            future: Future[Completion] = Future()
            self._queue.put((prompt, p, future))
            futures.append(future)
        return [f.result() for f in futures]

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=60)

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                live = self._live
                if live and len(batch) >= live:
                    break  # every announced episode is in this batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:  # poll: an episode that ends lowers the number to wait for
                    item = self._queue.get(timeout=min(remaining, 0.005) if live else remaining)
                except queue.Empty:
                    if live:
                        continue
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self.batch_sizes.append(len(batch))
            start = time.monotonic()
            try:
                outs = self.generator.generate([b[0] for b in batch], [b[1] for b in batch])
            except BaseException as e:  # every waiting episode gets the error, none hangs
                for _, _, future in batch:
                    future.set_exception(e)
                continue
            finally:
                self.busy_s += time.monotonic() - start
            for (_, _, future), out in zip(batch, outs, strict=True):
                future.set_result(out)
