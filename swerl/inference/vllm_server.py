r"""`vllm-server`: a client of vLLM's OpenAI-compatible `/v1/completions` endpoint, token ids in
and token ids + log-probs out, so generation can run on other machines.

    VLLM_SERVER_DEV_MODE=1 vllm serve /models/policy --served-model-name policy \
        --generation-config vllm --logprobs-mode processed_logprobs
    gen = VLLMServerGenerator("http://gpu-box:8000")
    gen.serve(model_dir)   # e.g. a `models` version's directory: load it, then sample from it

Requests send the prompt as a list of token ids and every sampling knob explicitly, ask for the
sampled tokens' log-probs (`logprobs: 1`, read from `token_logprobs`) and for token ids back
(`return_token_ids`, with `return_tokens_as_token_ids` as the fallback for older servers). A
concurrency limit bounds requests in flight; connection errors and 5xx answers are retried with
backoff. The `model` of every request is the name the server reports in `/v1/models`.

Changing the policy of a running server (`serve`). The DAPO loop publishes a new Hugging Face
directory per update; a vLLM server keeps serving what it was started with, and a request that names
another directory is refused (404, "model does not exist"). `serve(model_dir)` makes the server load
the checkpoint in place, with vLLM's own developer endpoints (registered only when the server runs
with `VLLM_SERVER_DEV_MODE=1`; the routes are in vllm/entrypoints/openai/api_server.py, in later
versions under vllm/entrypoints/serve/):

    POST /collective_rpc {"method": "update_config",
                          "args": [{"model_config": {"model": "<model_dir>"}}]}
    POST /collective_rpc {"method": "reload_weights"}
    POST /reset_prefix_cache
    GET  /v1/models                                   -> the served name for the requests

`update_config` replaces fields of each worker's `ModelConfig` (`Worker.update_config` ->
`GPUModelRunner.update_config`, allowed: `model_config`, `load_config`), `reload_weights` runs the
model loader again in place (`GPUModelRunner.reload_weights` -> `DefaultModelLoader.load_weights`,
which reads the safetensors of `model_config.model`), on every tensor-parallel worker; this is
vLLM's "update_config then reload_weights" sequence (its example
examples/offline_inference/skip_loading_weights_in_engine_init.py, there on `load_config`).
`/collective_rpc` answers `{"results": [<one per worker>]}`, and HTTP 500 with the worker's
exception when a step fails (a missing directory, a checkpoint of another architecture). The prefix
cache holds keys and values computed with the old weights, hence the reset. Why this and not the
alternatives: sleep mode (`/sleep`, `/wake_up`) frees and restores the same weights but loads
nothing new; `/v1/load_lora_adapter` loads adapters, not a full fine-tune; TRL's `trl vllm-serve`
(`/update_named_param/` over NCCL) and verl / OpenRLHF push tensors from a live trainer over a
process group, which needs the trainer and the server in one NCCL world; our update stage writes a
checkpoint to the shared filesystem and exits, so reading that checkpoint is the whole job.

Where this deviates or falls short: the server must run with `VLLM_SERVER_DEV_MODE=1`, which also
exposes `/collective_rpc` to anyone who can reach the port (vLLM's security notes: keep it on a
trusted network). A server without the developer endpoints (404) is accepted only for the directory
it was started with (`root` in `/v1/models`). `serve` loads the checkpoint every time it is called,
even when the server already holds it: a server keeps no record of what was loaded last, and a
restarted server silently serves its start-up model again, so skipping would risk sampling from the
wrong policy (a reload costs minutes; a rollout batch at the paper's scale, hours). What it does not
check: that the loaded numbers equal the checkpoint's (HTTP success is vLLM's only report; vLLM
issue #32718, open, reports `reload_weights` giving stale weights instead of re-reading the disk in
0.14; the `gpu` test in tests/inference/test_vllm.py checks the samples after a reload on a real
server); requests of other clients in flight during the reload; a load balancer in front of several
servers (only one replica would reload: point `server_url` at one server); quantized checkpoints (in
0.10-0.11 `reload_weights` does not re-run `process_weights_after_loading`).

Sources (vLLM's code, read for this): the `/collective_rpc` and `/reset_prefix_cache` routes
(body `method`, `args`, `kwargs`, `timeout`; answer `{"results": [...]}`), `update_config` and
`reload_weights` of vllm/v1/worker/gpu_worker.py and gpu_model_runner.py, `get_all_weights` of
vllm/model_executor/model_loader/default_loader.py (weights from `model_config.model`); the RFC
vllm-project/vllm#19886 (in-place reload: update the config, then `reload_weights`) and the
request #12774 (load new weights from disk in a running server); TRL's trl/scripts/vllm_serve.py
for the NCCL alternative.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from swerl.inference.base import Completion, SamplingParams

RETRYABLE = (httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.WriteError)
RECONNECTABLE = (httpx.ConnectError, httpx.RemoteProtocolError)
"""Errors after which a server-control request is sent again: the connection failed or broke, and
every control step is idempotent (the same update, the same load). Not a read timeout: the load
may still be running, and a second one would race it."""
LOAD_TIMEOUT_S = 3600.0
"""How long one step of loading a checkpoint may take (a 72B model from a network filesystem)."""
DEV_MODE_HINT = (
    "start it with VLLM_SERVER_DEV_MODE=1 (vLLM >= 0.10; see swerl/inference/vllm_server.py)"
)


class ServerError(RuntimeError):
    """The server answered with an error or an answer we cannot use; the message says which."""


class VLLMServerGenerator:
    name = "vllm-server"
    has_logprobs = True

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        max_concurrency: int = 64,
        retries: int = 5,
        timeout_s: float = 600.0,
        api_key: str | None = None,
    ):
        """`model` is the served name the requests carry; leave it out and call `serve` to load a
        checkpoint and take the name the server reports."""
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/v1/completions"
        self.model = model
        self.retries = retries
        self.slots = threading.Semaphore(max_concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)
        self.pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="vllm-client")

    def serve(self, model_dir: str | Path) -> str:
        """Make the server load the Hugging Face checkpoint `model_dir` (a path the server sees
        too: a shared filesystem) in place of its weights, drop its prefix cache, and use the
        name it reports from now on; returns that name. Fails with the server's URL, the
        directory and the server's answer when any step fails; nothing is sampled then."""
        directory = str(Path(model_dir).absolute())
        if not (Path(directory) / "config.json").is_file():
            raise ServerError(f"{directory} is not a Hugging Face model directory (no config.json)")
        where = f"{self.base_url}: loading {directory}"
        update = {"model_config": {"model": directory}}
        answer = self._control(
            "POST", "/collective_rpc", {"method": "update_config", "args": [update]}
        )
        if answer.status_code == 404:  # no developer endpoints: only its start-up model
            name, root = self._served_model(where)
            if root not in (directory, str(model_dir)):
                raise ServerError(
                    f"{where}: the server has no /collective_rpc (HTTP 404) and serves {root}; "
                    + DEV_MODE_HINT
                )
            self.model = name
            return name
        check_answer(answer, f"{where}: update_config")
        check_answer(
            self._control("POST", "/collective_rpc", {"method": "reload_weights"}),
            f"{where}: reload_weights",
        )
        check_answer(self._control("POST", "/reset_prefix_cache"), f"{where}: reset_prefix_cache")
        self.model, _ = self._served_model(where)
        return self.model

    def _served_model(self, where: str) -> tuple[str, str]:
        """The server's base model from `/v1/models`: (served name, directory it started with).
        LoRA adapters (entries with a `parent`) are not the policy."""
        answer = self._control("GET", "/v1/models")
        check_answer(answer, f"{where}: /v1/models")
        base = [m for m in answer.json().get("data", []) if m.get("parent") is None]
        if not base:
            raise ServerError(f"{where}: /v1/models lists no base model: {answer.text[:300]}")
        return base[0]["id"], base[0].get("root", base[0]["id"])

    def _control(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        """One server-control request, sent again with backoff while it cannot get through."""
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return self.client.request(
                    method, self.base_url + path, json=body, timeout=LOAD_TIMEOUT_S
                )
            except RECONNECTABLE as e:
                error = f"{type(e).__name__}: {e}"
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise ServerError(
            f"{self.base_url}{path}: gave up after {self.retries + 1} attempts ({error})"
        )

    def request_body(self, prompt: list[int], p: SamplingParams) -> dict[str, Any]:
        assert self.model is not None, "no served model name: give `model` or call serve() first"
        return {
            "model": self.model,
            "prompt": list(prompt),
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": p.top_k if p.top_k > 0 else -1,
            "min_p": p.min_p,
            "repetition_penalty": p.repetition_penalty,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "stop_token_ids": list(p.stop_token_ids),
            "logprobs": 1,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": False,
            "include_stop_str_in_output": True,
            "n": 1,
        } | ({"seed": p.seed} if p.seed is not None else {})

    def complete(self, prompt: list[int], p: SamplingParams) -> Completion:
        body = self.request_body(prompt, p)
        delay = 0.5
        with self.slots:
            for attempt in range(self.retries + 1):
                try:
                    response = self.client.post(self.url, json=body)
                except RETRYABLE as e:
                    error: str = f"{type(e).__name__}: {e}"
                else:
                    if response.status_code < 500:
                        return parse_completion(response)
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
                if attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)
        raise ServerError(f"{self.url}: gave up after {self.retries + 1} attempts ({error})")

    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        if len(prompts) != len(params):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling settings")
        return list(self.pool.map(self.complete, prompts, params))


def check_answer(response: httpx.Response, what: str) -> None:
    """A control request must answer 200; otherwise the error names the step and the answer (a
    404 on a developer endpoint: the server runs without them)."""
    if response.status_code == 200:
        return
    hint = f"; {DEV_MODE_HINT}" if response.status_code == 404 else ""
    raise ServerError(f"{what}: HTTP {response.status_code}: {response.text[:500]}{hint}")


def parse_completion(response: httpx.Response) -> Completion:
    if response.status_code != 200:
        raise ServerError(f"HTTP {response.status_code}: {response.text[:300]}")
    choice = response.json()["choices"][0]
    logprobs = choice.get("logprobs") or {}
    ids = choice.get("token_ids")
    if ids is None:  # older servers: tokens come back as "token_id:123"
        tokens = logprobs.get("tokens")
        if tokens is None:
            raise ServerError("the answer holds neither token_ids nor logprobs.tokens")
        ids = [int(t.split(":", 1)[1]) for t in tokens]
    values = logprobs.get("token_logprobs")
    if values is None or len(values) != len(ids):
        raise ServerError("the answer lacks one log-prob per generated token")
    finish = "stop" if choice.get("finish_reason") == "stop" else "length"
    return Completion([int(i) for i in ids], [float(v) for v in values], finish)
