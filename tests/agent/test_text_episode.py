"""The text path: an `openai-chat` generator drives episodes over real HTTP against a small local
chat-completions server that plays an agent (it applies the task's gold patch, then submits) and
reports `usage` (one token per whitespace-separated word). The episode is graded resolved in a
real sandbox; token columns are null, counts are the endpoint's; training stages refuse the rows;
the evaluate stage evaluates the API model without a model directory or a stored API key."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from swerl.agent.episode import EpisodeConfig, run_text_episode
from swerl.agent.rollout import Prompts, RolloutConfig, make_generator, rollout, run_rollouts
from swerl.evaluation.evaluate import evaluate
from swerl.inference.base import SamplingParams
from swerl.inference.openai_chat import ChatReply, LogprobsRequired, OpenAIChatGenerator
from swerl.lake import Lake
from swerl.models.tiny import build_tiny_model
from swerl.sandbox import open_sandbox
from swerl.swe.task import load_tasks
from swerl.swe.toy import publish_toy_suite

KEY = "sk-test-not-a-real-key-123"
CONFIG = RolloutConfig(
    samples=1,
    stage="eval",
    backend="local",
    max_live_sandboxes=2,
    turn_penalty_threshold=2,
    episode=EpisodeConfig(max_turns=4),
)


def words(messages: list[dict]) -> int:
    """The server's token count: whitespace-separated words of every message."""
    return sum(len(m["content"].split()) for m in messages)


def agent_reply(tasks, messages: list[dict]) -> str:
    """First turn: apply the gold patch of the task the issue describes; then submit."""
    task = next(t for t in tasks if t.problem_statement in messages[1]["content"])
    if not any(m["role"] == "assistant" for m in messages):
        return f"I will apply the fix.\n```command\ngit apply <<'EOF'\n{task.patch}EOF\n```"
    return "Done.\n```command\nsubmit\n```"


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("lake"))
    publish_toy_suite(lake, seed=0, n_train=2, n_eval=0)
    return lake


@pytest.fixture(scope="module")
def server(lake):
    tasks = load_tasks("toy-swe", root=lake.root)
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            text = agent_reply(tasks, body["messages"])
            answer = {
                "choices": [
                    {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": words(body["messages"]),
                    "completion_tokens": len(text.split()),
                },
            }
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()


def test_an_api_model_resolves_a_toy_task_over_http(lake, server, monkeypatch):
    url, seen = server
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    gen, chat = make_generator(
        "scripted-agent", "openai-chat", server_url=url, device="cpu", seed=0
    )
    assert isinstance(gen, OpenAIChatGenerator) and chat is None
    tasks = load_tasks("toy-swe", root=lake.root)[:1]
    seen.clear()
    (episode,) = run_rollouts(tasks, gen, None, CONFIG, policy_version="openai-chat:scripted")
    row = episode.trajectory
    assert row["resolved"] and row["grade_outcome"] == "resolved"
    assert row["termination"] == "submitted" and row["turns"] == 2 and row["submitted"]
    assert row["reward"] == 1.0 and row["generator"] == "openai-chat"
    assert row["patch"].startswith("diff --git")
    for column in ("token_ids", "loss_mask", "sampler_logprobs", "fidelity_mismatches"):
        assert row[column] is None, column
    # the endpoint's counts: first prompt; both replies; the last request's prompt + reply
    first, second = seen
    assert first["path"] == "/v1/chat/completions" and first["auth"] == f"Bearer {KEY}"
    assert first["model"] == "scripted-agent" and first["max_tokens"] == 65_536
    assert row["prompt_tokens"] == words(first["messages"])
    replies = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
    assert row["completion_tokens"] == sum(len(r.split()) for r in replies)
    assert row["total_tokens"] == words(second["messages"]) + len(replies[1].split())
    # the second request carried the whole conversation: reply 1 and its observation
    assert second["messages"] == row["messages"][:4]
    assert second["max_tokens"] == 65_536 - words(first["messages"]) - len(replies[0].split())
    assert [t["observation_tokens"] for t in episode.turns] == [None, 0]


def test_training_stages_refuse_text_only_rows(lake, server, tmp_path):
    from swerl.train.rft import RFTConfig, RFTDataError, rft_examples
    from swerl.train.update import UpdateConfig, UpdateError, update_policy

    url, _ = server
    gen = OpenAIChatGenerator(url, model="scripted-agent")
    tasks = load_tasks("toy-swe", root=lake.root)[:1]
    dapo = RolloutConfig(**{**CONFIG.__dict__, "stage": "dapo", "samples": 2})
    episodes = run_rollouts(tasks, gen, None, dapo, policy_version="openai-chat:scripted")
    version = lake.write("trajectories", [e.trajectory for e in episodes], stage="test")
    model = build_tiny_model(tmp_path / "tiny")
    with pytest.raises(UpdateError, match="2 come from a text-only generator \\(openai-chat\\)"):
        update_policy(lake, str(model), [version], 0, UpdateConfig(batch_size=2))
    with pytest.raises(RFTDataError, match="have no token_ids \\(text-only generator"):
        rft_examples(
            lake.read("trajectories", version), None, RFTConfig(), f"trajectories {version}"
        )
    # the rollout stage, which makes training data, refuses the kind before any work
    before = [v.version for v in lake.versions("trajectories")]
    with pytest.raises(LogprobsRequired, match="'openai-chat' generator returns text only"):
        rollout(lake, model=str(model), tasks="toy-swe", config=dapo, generator="openai-chat")
    assert [v.version for v in lake.versions("trajectories")] == before


def test_the_context_limit_is_counted_with_the_endpoints_usage(lake):
    task = load_tasks("toy-swe", root=lake.root)[0]
    asked: list[int] = []

    def chat(messages: list[dict], p: SamplingParams) -> ChatReply:
        asked.append(p.max_tokens)
        text = "Look.\n```command\ncat README.md\n```"  # observations grow the conversation
        return ChatReply(text, "stop", prompt_tokens=100 * len(messages), completion_tokens=5)

    sandbox = open_sandbox(task, backend="local")
    try:
        system, issue = Prompts.load().render(task, EpisodeConfig(), repo_dir=sandbox.workdir)
        config = EpisodeConfig(max_turns=10, max_context_tokens=420)
        result = run_text_episode(chat, sandbox, system, issue, config)
    finally:
        sandbox.close()
    # requests of 2, 4, 6 messages: 205, 405, then 605 > 420 -> context_limit, not executed
    assert asked == [420, 420 - 205, 420 - 405]
    assert result.termination == "context_limit" and len(result.turns) == 3
    assert [t.command for t in result.turns] == ["cat README.md", "cat README.md", None]
    assert result.transcript.prompt_tokens == 200
    assert result.transcript.completion_tokens == 15
    assert result.transcript.context_tokens == 605


def test_the_evaluate_stage_evaluates_an_api_model(lake, server, monkeypatch):
    url, _ = server
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = evaluate(
        lake,
        model="scripted-agent",
        tasks="toy-swe",
        attempts=2,
        episode=EpisodeConfig(max_turns=4),
        backend="local",
        max_live_sandboxes=2,
        turn_penalty_threshold=2,
        generator="openai-chat",
        server_url=url,
    )
    rows = lake.read("evals", out.evals).to_pylist()
    assert len(rows) == 4 and all(r["resolved"] for r in rows)
    assert {r["model_version"] for r in rows} == {"openai-chat:scripted-agent"}
    assert {r["generator"] for r in rows} == {"openai-chat"}
    assert out.summary["pass_at_1"] == 1.0
    manifest = lake.manifest("evals", out.evals)
    assert (
        "models" not in manifest["inputs"] and manifest["parameters"]["model"] == "scripted-agent"
    )
    assert KEY not in json.dumps(manifest)
    prediction = json.loads((out.predictions / "attempt-00.jsonl").read_text().splitlines()[0])
    assert prediction["model_name_or_path"] == "scripted-agent" and prediction["model_patch"]
    with pytest.raises(ValueError, match="openai-chat needs server_url"):
        evaluate(lake, model="scripted-agent", tasks="toy-swe", generator="openai-chat")


def test_a_reply_cut_by_max_turn_tokens_is_a_format_error_and_the_episode_goes_on(lake):
    task = load_tasks("toy-swe", root=lake.root)[0]
    replies = iter([("```command\nls", "length"), ("Done.\n```command\nsubmit\n```", "stop")])
    asked: list[int] = []

    def chat(messages: list[dict], p: SamplingParams) -> ChatReply:
        asked.append(p.max_tokens)
        text, finish = next(replies)
        return ChatReply(text, finish, prompt_tokens=words(messages), completion_tokens=8)

    sandbox = open_sandbox(task, backend="local")
    try:
        system, issue = Prompts.load().render(task, EpisodeConfig(), repo_dir=sandbox.workdir)
        config = EpisodeConfig(max_turns=4, max_turn_tokens=8)
        result = run_text_episode(chat, sandbox, system, issue, config)
    finally:
        sandbox.close()
    assert asked == [8, 8] and result.termination == "submitted"
    cut, submit = result.turns
    assert cut.format_error and cut.command is None and "was cut at 8 tokens" in cut.observation
    assert result.transcript.messages[3] == {"role": "user", "content": cut.observation}
    assert submit.command == "submit" and result.patch == ""
