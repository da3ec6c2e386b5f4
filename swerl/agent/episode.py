"""One episode: the policy and a sandbox take turns until `submit`, the turn limit or the context
limit (PAPER.md section 2; terminations per our section 9).

    result = run_episode(chat, generate, sandbox, system_prompt, issue_prompt, EpisodeConfig())

Each turn's token budget is what is left of `max_context_tokens`; a turn that runs out of it, or an
observation that would not leave room for another turn, ends the episode with `context_limit`.
Format errors (no or several command blocks) and tool misuse are answered with an error
observation; the turn counts and the episode goes on. Grading happens elsewhere, in a fresh
sandbox, on `result.patch`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from swerl.agent.chat import ChatFormat, Transcript
from swerl.agent.parse import UsageError, extract_command, parse_call
from swerl.agent.tools import Sandbox, ToolConfig, Tools
from swerl.inference.base import Completion, SamplingParams

TERMINATIONS = ("submitted", "max_turns", "context_limit", "generation_error", "sandbox_error")


@dataclass(frozen=True)
class EpisodeConfig:
    """Limits of an episode; stage 1 of the paper is 40 turns in 65k tokens."""

    max_turns: int = 40
    """Assistant turns before the episode is cut (`max_turns`)."""
    max_context_tokens: int = 65_536
    """Prompt + every turn and observation must fit in this many tokens."""
    sampling: SamplingParams = SamplingParams()
    """Rollout sampling; `max_tokens` and stop tokens are set per turn."""
    tools: ToolConfig = ToolConfig()
    """Viewer window, command timeout, observation limit."""

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")
        if self.max_context_tokens < 16:
            raise ValueError(f"max_context_tokens must be >= 16, got {self.max_context_tokens}")


@dataclass
class TurnRecord:
    """What happened in one turn (one row of the `turns` dataset)."""

    index: int
    command: str | None
    observation: str
    format_error: bool
    tool_error: bool
    timed_out: bool
    completion_tokens: int
    observation_tokens: int
    generation_s: float
    tool_s: float


@dataclass
class EpisodeResult:
    transcript: Transcript
    turns: list[TurnRecord]
    termination: str
    patch: str | None
    error: str | None = None
    generation_s: float = 0.0
    tool_s: float = 0.0
    total_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def submitted(self) -> bool:
        return self.termination == "submitted"

    @property
    def format_errors(self) -> int:
        return sum(t.format_error for t in self.turns)


def run_episode(
    chat: ChatFormat,
    generate: Callable[[list[int], SamplingParams], Completion],
    sandbox: Sandbox,
    system_prompt: str,
    issue_prompt: str,
    config: EpisodeConfig = EpisodeConfig(),
) -> EpisodeResult:
    started = time.monotonic()
    transcript = Transcript.start(chat, system_prompt, issue_prompt)
    tools = Tools(sandbox, config.tools)
    turns: list[TurnRecord] = []
    termination, error = "max_turns", None
    gen_total = tool_total = 0.0
    for index in range(config.max_turns):
        budget = config.max_context_tokens - len(transcript.token_ids)
        if budget < 1:
            termination = "context_limit"
            break
        params = dataclasses.replace(
            config.sampling, max_tokens=budget, stop_token_ids=(chat.end_of_turn_id,)
        )
        t0 = time.monotonic()
        try:
            completion = generate(transcript.token_ids, params)
        except Exception as e:  # the engine failed: end this episode, keep the others going
            termination, error = "generation_error", f"{type(e).__name__}: {e}"
            break
        gen_s = time.monotonic() - t0
        gen_total += gen_s
        logprobs = completion.logprobs or [0.0] * len(completion.token_ids)
        message = transcript.add_assistant(completion.token_ids, logprobs)
        if completion.finish_reason != "stop":
            turns.append(
                TurnRecord(
                    index, None, "", False, False, False, len(completion.token_ids), 0, gen_s, 0.0
                )
            )
            termination = "context_limit"
            break

        t0 = time.monotonic()
        parsed = extract_command(message)
        command, format_error, tool_error, timed_out, submitted = (
            parsed.command,
            False,
            False,
            False,
            False,
        )
        try:
            if parsed.format_error is not None:
                format_error = True
                text = parsed.format_error + "\n" + tools.prompt_line()
            else:
                try:
                    obs = tools.execute(parse_call(parsed.command))
                except UsageError as e:  # a call that does not even parse
                    obs = tools.execute_error(str(e))
                text, tool_error, timed_out, submitted = (
                    obs.text,
                    obs.tool_error,
                    obs.timed_out,
                    obs.submitted,
                )
        except Exception as e:  # the sandbox itself failed (container gone, engine down)
            termination, error = "sandbox_error", f"{type(e).__name__}: {e}"
            turns.append(
                TurnRecord(
                    index,
                    command,
                    "",
                    format_error,
                    False,
                    False,
                    len(completion.token_ids),
                    0,
                    gen_s,
                    time.monotonic() - t0,
                )
            )
            break
        tool_s = time.monotonic() - t0
        tool_total += tool_s

        if submitted:
            turns.append(
                TurnRecord(
                    index,
                    command,
                    "",
                    False,
                    False,
                    False,
                    len(completion.token_ids),
                    0,
                    gen_s,
                    tool_s,
                )
            )
            termination = "submitted"
            break
        cost = transcript.observation_cost(text)
        record = TurnRecord(
            index,
            command,
            text,
            format_error,
            tool_error,
            timed_out,
            len(completion.token_ids),
            cost,
            gen_s,
            tool_s,
        )
        turns.append(record)
        if len(transcript.token_ids) + cost >= config.max_context_tokens:
            termination = "context_limit"  # no room for the observation and another turn
            break
        transcript.add_observation(text)

    patch = None
    if termination != "sandbox_error":
        try:
            patch = sandbox.diff()
        except Exception as e:
            termination, error = "sandbox_error", f"diff failed: {type(e).__name__}: {e}"
    return EpisodeResult(
        transcript,
        turns,
        termination,
        patch,
        error,
        generation_s=gen_total,
        tool_s=tool_total,
        total_s=time.monotonic() - started,
    )
