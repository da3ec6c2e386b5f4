"""Log-prob memory benchmark: chunked LM head (swerl.train.logprobs) against full logits.

    .venv/bin/python benchmarks/logprob_memory.py                   # 16,384 tokens, 32k vocab
    .venv/bin/python benchmarks/logprob_memory.py --tokens 4096     # a quick run

For one sequence of `--tokens` tokens with random hidden states [T, H] and head weight [V, H]
(both trainable), computes loss = -mean(log p(target)) and its backward, once through
`token_logprobs` (chunks of `--chunk-size` tokens, logits recomputed in backward) and once the
naive way (`log_softmax` over the full [T, V] float32 logits, then `gather`). Prints peak memory,
time, the difference of the two losses and of the two gradients. Goal: chunked peak <= 25% of
the naive peak, losses equal to 1e-5.

What "peak" means: on CPU each path runs in a fresh Python subprocess, which builds its inputs,
runs a tiny warm-up (so that one-off library allocations are not charged to the path), reads
`resource.getrusage(RUSAGE_SELF).ru_maxrss` as a baseline, runs forward + backward, and reads it
again. The difference is how far the process's resident-set high-water mark rose during the
computation: the extra memory the path needed at its worst moment, over and above the inputs,
the libraries and the warm-up. The gradients (same size for both paths) are included. With
`--device cuda` the figure is `torch.cuda.max_memory_allocated` after a reset, minus the memory
allocated before the computation (PyTorch's allocator, not the driver's reservations).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from swerl.train.logprobs import token_logprobs

MiB = 2**20


def naive_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor):
    logits = (hidden @ weight.T).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)


def run_path(path: str, tokens: int, vocab: int, hidden_size: int, chunk_size: int, device: str):
    """Forward + backward of one path in this process; returns (peak MiB, seconds, loss, grads)."""

    def loss_of(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if path == "naive":
            return -naive_logprobs(h, w, t).mean()
        return -token_logprobs(h, w, t, chunk_size=chunk_size).mean()

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        h = (torch.randn(n, hidden_size, generator=g) / hidden_size**0.5).to(device)
        w = torch.randn(vocab, hidden_size, generator=g).to(device)
        t = torch.randint(0, vocab, (n,), generator=g).to(device)
        return h.requires_grad_(True), w.requires_grad_(True), t

    loss_of(*make(8)).backward()  # warm-up: kernels, thread pools, allocator arenas
    hidden, weight, targets = make(tokens)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    start = time.perf_counter()
    loss = loss_of(hidden, weight, targets)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return peak / MiB, seconds, loss.item(), (hidden.grad.cpu(), weight.grad.cpu())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tokens", type=int, default=16_384)
    ap.add_argument("--vocab", type=int, default=32_000)
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--worker", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    ap.add_argument("--grads-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = (args.tokens, args.vocab, args.hidden_size, args.chunk_size, args.device)

    if args.worker:  # one path, in a fresh process, reported as JSON on stdout
        peak, seconds, loss, grads = run_path(args.worker, *sizes)
        torch.save(grads, args.grads_out)
        print(json.dumps({"peak_mib": peak, "seconds": seconds, "loss": loss}))
        return

    results, grads = {}, {}
    with tempfile.TemporaryDirectory(prefix="swerl-bench-logprobs-") as tmp:
        for path in ("naive", "chunked"):
            out = Path(tmp) / f"{path}.pt"
            cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", path, "--grads-out", out]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[path] = json.loads(proc.stdout.strip().splitlines()[-1])
            grads[path] = torch.load(out)

    naive, chunked = results["naive"], results["chunked"]
    logits_mib = args.tokens * args.vocab * 4 / MiB
    print(
        f"{args.tokens:,} tokens x {args.vocab:,} vocab, hidden {args.hidden_size}, "
        f"chunk {args.chunk_size}, {args.device}; one float32 logits matrix = {logits_mib:,.0f} MiB"
    )
    print(f"{'path':<10}{'peak MiB':>12}{'seconds':>10}{'loss':>14}")
    for name, r in results.items():
        print(f"{name:<10}{r['peak_mib']:>12,.0f}{r['seconds']:>10.2f}{r['loss']:>14.8f}")
    ratio = chunked["peak_mib"] / naive["peak_mib"]
    loss_diff = abs(chunked["loss"] - naive["loss"])
    grad_diff = max(
        (a - b).abs().max().item() for a, b in zip(grads["chunked"], grads["naive"], strict=True)
    )
    print(f"chunked / naive peak: {ratio:.1%} (goal <= 25%)")
    print(f"|loss difference|: {loss_diff:.2e} (goal <= 1e-5)")
    print(f"max |gradient difference|: {grad_diff:.2e}")


if __name__ == "__main__":
    main()
