"""torch intra-op threads for the `hf` generator on the CPU: one batch of 4 x 1,500-token prompts
plus 48 sampled tokens with the default tiny model, at 2 and at 1 thread (twice each).

    python benchmarks/hf_threads.py

Measured on the shared 2-core dev machine under load ~5 (2026-11-24): 12.35 s / 26.41 s at 2
threads, 1.06 s / 1.44 s at 1 thread; hence `HFGenerator(cpu_threads=1)` by default.
"""

from __future__ import annotations

import tempfile
import time

import torch

from swerl.inference.base import SamplingParams
from swerl.inference.hf import HFGenerator
from swerl.models.tiny import TinySpec, build_tiny_model


def main() -> None:
    model = build_tiny_model(tempfile.mkdtemp() + "/m", TinySpec())
    generator = HFGenerator(model, device="cpu", seed=0, cpu_threads=None)
    prompts, params = [[5] * 1500] * 4, [SamplingParams(max_tokens=48)] * 4
    for threads in (2, 1, 2, 1):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        generator.generate(prompts, params)
        print(
            f"threads {threads}: batch of 4 x (1500 + 48) tokens in {time.perf_counter() - t0:.2f} s"
        )


if __name__ == "__main__":
    main()
