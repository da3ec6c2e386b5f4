"""Generators: prompt token ids + sampling settings -> completion ids, log-probs, finish reason.

Backends: `hf` (transformers, CPU or GPU; tests and the demo), `replay` (recorded assistant
messages), and, as they land, `vllm` (in-process engine), `vllm-server` (token-in/token-out over
HTTP) and `openai-chat` (text-only API models, refused where log-probs are needed).
"""

from swerl.inference.base import Completion, Generator, SamplingParams

__all__ = ["Completion", "Generator", "SamplingParams"]
