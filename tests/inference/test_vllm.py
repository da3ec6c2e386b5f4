"""vLLM engine and server on a GPU (run on the lent device: `pytest -m gpu tests/inference`).

The tiny model's generation_config.json is set to Qwen-style defaults (top_k=20, top_p=0.8,
repetition_penalty=1.05) to prove they do not leak into rollouts (PAPER.md lesson 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM

from swerl.inference import SamplingParams
from swerl.models.tiny import TinySpec, build_tiny_model

pytestmark = pytest.mark.gpu
vllm = pytest.importorskip("vllm", reason="vLLM is not installed (pip install -e '.[vllm]')")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

CORPUS = ["def add(a, b):\n    return a + b\n"] * 40


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = build_tiny_model(
        tmp_path_factory.mktemp("tiny") / "m",
        TinySpec(vocab_size=400, hidden_size=64, heads=4),
        CORPUS,
    )
    (path / "generation_config.json").write_text(
        json.dumps({"top_k": 20, "top_p": 0.8, "repetition_penalty": 1.05, "temperature": 0.7})
    )
    return path


def forward_logprobs(model_dir, prompt, completion):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt + completion])).logits[0], -1)
    return [float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(completion)]


def test_engine_samples_pinned_and_logprobs_match(model_dir):
    from swerl.inference.vllm import VLLMGenerator, effective_sampling, to_vllm

    gen = VLLMGenerator(model_dir, dtype="float32", gpu_memory_utilization=0.3, enforce_eager=True)
    p = SamplingParams(max_tokens=16)
    assert effective_sampling(to_vllm(p)) == {
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "max_tokens": 16,
    }
    prompts = [[5, 6, 7], [8, 9]]
    outs = gen.generate(prompts, [p, p])
    for prompt, out in zip(prompts, outs, strict=True):
        expected = forward_logprobs(model_dir, prompt, out.token_ids)
        assert max(abs(a - b) for a, b in zip(out.logprobs, expected, strict=True)) < 1e-2
    # a seeded request samples the same tokens alone and inside a batch of others
    seeded = SamplingParams(max_tokens=16, seed=42)
    assert to_vllm(seeded).seed == 42
    alone = gen.generate([[5, 6, 7]], [seeded])[0]
    batched = gen.generate([[8, 9], [5, 6, 7], [10]], [p, seeded, p])[1]
    assert batched.token_ids == alone.token_ids


def start_server(model_dir, port: int, log, *extra: str, env: dict | None = None):
    """`vllm serve` on the tiny model with the sampling pinned, on 127.0.0.1:`port`."""
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    command += ["--model", str(model_dir), "--port", str(port), "--host", "127.0.0.1"]
    command += ["--dtype", "float32", "--generation-config", "vllm"]
    command += ["--logprobs-mode", "processed_logprobs", "--gpu-memory-utilization", "0.3"]
    command += ["--enforce-eager", *extra]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def stop_server(proc) -> None:
    proc.terminate()
    proc.wait(60)
    time.sleep(1)


def test_server_client(model_dir, tmp_path):
    from swerl.inference.vllm_server import VLLMServerGenerator

    if shutil.which("vllm") is None:
        pytest.skip("the vllm command is not on PATH")
    port = 18765
    proc = start_server(model_dir, port, open(tmp_path / "server.log", "w"))  # noqa: SIM115
    try:
        client = VLLMServerGenerator(f"http://127.0.0.1:{port}", model=str(model_dir), retries=60)
        out = client.complete([5, 6, 7], SamplingParams(max_tokens=8))
        expected = forward_logprobs(model_dir, [5, 6, 7], out.token_ids)
        assert max(abs(a - b) for a, b in zip(out.logprobs, expected, strict=True)) < 1e-2
    finally:
        stop_server(proc)


def test_server_loads_a_new_checkpoint_in_place(model_dir, tmp_path):
    """The DAPO loop's weight update on a real server: started on the base model in developer
    mode, `serve` makes it load other weights (update_config + reload_weights), and samples then
    come from the new weights under the served name."""
    from swerl.inference.vllm_server import VLLMServerGenerator

    if shutil.which("vllm") is None:
        pytest.skip("the vllm command is not on PATH")
    updated = tmp_path / "updated"
    shutil.copytree(model_dir, updated)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save_pretrained(updated)
    port = 18766
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (lives as long as the server)
    proc = start_server(model_dir, port, log, "--served-model-name", "policy", env=env)
    try:
        client = VLLMServerGenerator(f"http://127.0.0.1:{port}", retries=60)
        assert client.serve(updated) == "policy"
        prompt = [5, 6, 7]
        out = client.complete(prompt, SamplingParams(max_tokens=8))
        new = forward_logprobs(updated, prompt, out.token_ids)
        old = forward_logprobs(model_dir, prompt, out.token_ids)
        assert max(abs(a - b) for a, b in zip(out.logprobs, new, strict=True)) < 1e-2
        assert max(abs(a - b) for a, b in zip(out.logprobs, old, strict=True)) > 1e-1
    finally:
        stop_server(proc)
