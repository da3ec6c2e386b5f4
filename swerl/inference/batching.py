"""Serve many concurrent episodes from one batched generator.

Episodes run in threads (their sandbox calls block on I/O); each asks for one completion at a
time. `BatchingGenerator` collects the requests that arrive while the generator is busy (or within
`max_wait_s` of the first) and runs them as one batch, so generation sees batches while sandboxes
execute.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

from swerl.inference.base import Completion, Generator, SamplingParams


class BatchingGenerator:
    def __init__(self, generator: Generator, *, max_batch: int = 16, max_wait_s: float = 0.01):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.generator = generator
        self.name = generator.name
        self.has_logprobs = generator.has_logprobs
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batch_sizes: list[int] = []  # for benchmarks and tests: how batching went
        self.busy_s = 0.0  # time spent inside the generator
        self._queue: queue.Queue[tuple[list[int], SamplingParams, Future] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="swerl-generator", daemon=True)
        self._worker.start()

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
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
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
