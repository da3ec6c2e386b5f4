"""One episode: the policy and a sandbox take turns until `submit`, the turn limit or the context
limit (PAPER.md section 2; terminations per our section 9), then its score.

    result = run_episode(chat, generate, sandbox, system_prompt, issue_prompt, EpisodeConfig())
    score = score_episode(task, result, backend="docker", max_turns=40)

Each turn's token budget is what is left of `max_context_tokens` (capped by `max_turn_tokens`
when set). A turn that runs out of the context, or an observation that would not leave room for
another turn, ends the episode with `context_limit`; the trajectory keeps every token up to there.
Format errors (no or several command blocks) and tool misuse are answered with an error
observation; the turn counts and the episode goes on. A turn cut by `max_turn_tokens` (our knob,
off by default, the paper has none) is closed with the end-of-turn token, which is not sampled
(loss mask 0), and answered as a format error. The generator failing ends the episode with
`generation_error`, the sandbox failing (`SandboxError`, or an OS/engine error on a file
transfer) with `sandbox_error`; other exceptions are bugs and propagate.

The text path (`run_text_episode`, for text-only generators such as `openai-chat`): the same loop,
tools, terminations and grading, but each turn sends the conversation as chat messages and gets
text back; there are no token ids, loss masks or log-probs (the trajectory row has them null, so
nothing can train on it). Token accounting has one rule there: the endpoint's reported `usage`.
The context in use is the last request's prompt_tokens + completion_tokens; the next reply may
sample what is left of `max_context_tokens` (capped by `max_turn_tokens`); a reply after which
the endpoint's count exceeds `max_context_tokens` (the observations before it made the
conversation too long), or that was cut at the remaining budget, ends the episode with
`context_limit` and is not executed. An observation's size is not known before it is sent, so
the text path can overrun the limit by one observation where the token path stops before it,
and `turns.observation_tokens` is null. No tokenizer is needed, so an API model is evaluated
without its tokenizer.

`score_episode` grades the final diff in a fresh sandbox (`grade_patch`): submitted episodes
always, unsubmitted ones (turn or context limit, generation error) too unless
`grade_unsubmitted=False`, which scores them 0 (PAPER.md section 9). The reward is section 4's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from swerl.agent.chat import ChatFormat, Message, Transcript
from swerl.agent.parse import extract_command
from swerl.agent.tools import Sandbox, ToolConfig, Tools
from swerl.grading import Grade, grade_patch
from swerl.grading.reward import turn_penalty
from swerl.inference.base import Completion, SamplingParams
from swerl.inference.openai_chat import ChatReply
from swerl.sandbox import SandboxError
from swerl.swe.task import Task

TERMINATIONS = ("submitted", "max_turns", "context_limit", "generation_error", "sandbox_error")
SANDBOX_FAILURES = (SandboxError, OSError)  # docker's API errors are OSErrors (requests)
CUT_TURN = (
    "Format error: your reply was cut at {n} tokens before it ended; write shorter replies with "
    "exactly one ```command block."
)


@dataclass(frozen=True)
class EpisodeConfig:
    """Limits of an episode; stage 1 of the paper is 40 turns in 65k tokens."""

    max_turns: int = 40
    """Assistant turns before the episode is cut (`max_turns`)."""
    max_context_tokens: int = 65_536
    """Prompt + every turn and observation must fit in this many tokens."""
    max_turn_tokens: int | None = None
    """Most tokens one reply may sample (None: whatever is left of the context)."""
    sampling: SamplingParams = SamplingParams()
    """Rollout sampling; `max_tokens` and stop tokens are set per turn."""
    tools: ToolConfig = ToolConfig()
    """Viewer window, command timeout, observation limit."""

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")
        if self.max_context_tokens < 16:
            raise ValueError(f"max_context_tokens must be >= 16, got {self.max_context_tokens}")
        if self.max_turn_tokens is not None and self.max_turn_tokens < 1:
            raise ValueError(f"max_turn_tokens must be >= 1 or None, got {self.max_turn_tokens}")


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
    observation_tokens: int | None
    """None on the text path: the endpoint counts an observation only inside the next prompt."""
    generation_s: float
    tool_s: float


@dataclass
class EpisodeResult:
    transcript: Transcript | TextTranscript
    """Token ids and messages (`run_episode`), or messages and the endpoint's counts (text)."""
    turns: list[TurnRecord]
    termination: str
    patch: str | None
    error: str | None = None
    generation_s: float = 0.0
    """Seconds waiting for the generator."""
    tool_s: float = 0.0
    """Seconds in sandbox calls: the tools and the final diff."""
    total_s: float = 0.0
    """Wall time of `run_episode`."""

    @property
    def submitted(self) -> bool:
        return self.termination == "submitted"

    @property
    def format_errors(self) -> int:
        return sum(t.format_error for t in self.turns)

    @property
    def tool_errors(self) -> int:
        return sum(t.tool_error for t in self.turns)


def run_episode(
    chat: ChatFormat,
    generate: Callable[[list[int], SamplingParams], Completion],
    sandbox: Sandbox,
    system_prompt: str,
    issue_prompt: str,
    config: EpisodeConfig = EpisodeConfig(),
    *,
    seed: int | None = None,
) -> EpisodeResult:
    """Play one episode in `sandbox` on token ids (see the module docstring). With `seed`, turn
    i's request carries the seed `turn_seed(seed, i)`: its draws are its own, so the episode
    samples the same tokens whatever other episodes share its batches."""
    started = time.monotonic()
    transcript = Transcript.start(chat, system_prompt, issue_prompt)
    return _play(_TokenPath(transcript, generate), sandbox, config, started, seed)


def run_text_episode(
    chat: Callable[[list[Message], SamplingParams], ChatReply],
    sandbox: Sandbox,
    system_prompt: str,
    issue_prompt: str,
    config: EpisodeConfig = EpisodeConfig(),
) -> EpisodeResult:
    """Play one episode in `sandbox` with a text-only generator (`chat`: the conversation's
    messages -> the reply's text, e.g. `OpenAIChatGenerator.chat`); see the module docstring for
    how its tokens are counted. The result's transcript is a `TextTranscript`."""
    started = time.monotonic()
    transcript = TextTranscript.start(system_prompt, issue_prompt)
    return _play(_TextPath(transcript, chat), sandbox, config, started)


@dataclass
class TextTranscript:
    """The text path's conversation: chat messages, and the endpoint's token counts (`usage`)."""

    messages: list[Message]
    prompt_tokens: int = 0
    """The first request's prompt (system + issue), as the endpoint counted it."""
    completion_tokens: int = 0
    """Every reply's tokens, summed."""
    context_tokens: int = 0
    """Prompt + reply of the last request: the conversation up to its last reply (an
    observation added since is not counted until the next request)."""

    @classmethod
    def start(cls, system: str, user: str) -> TextTranscript:
        return cls([{"role": "system", "content": system}, {"role": "user", "content": user}])

    def add_reply(self, reply: ChatReply) -> None:
        if not self.completion_tokens:
            self.prompt_tokens = reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.context_tokens = reply.prompt_tokens + reply.completion_tokens
        self.messages.append({"role": "assistant", "content": reply.text})


class _TokenPath:
    """The episode loop's view of a token-faithful transcript and a token generator."""

    def __init__(self, transcript: Transcript, generate):
        self.transcript, self.generate = transcript, generate
        self.stop = (transcript.chat.end_of_turn_id,)

    def used(self) -> int:
        return len(self.transcript.token_ids)

    def reply(self, params: SamplingParams) -> tuple[str, int, bool]:
        """(message text, tokens, ended with the end-of-turn token)"""
        completion = self.generate(self.transcript.token_ids, params)
        n = len(completion.token_ids)
        logprobs = completion.logprobs if completion.logprobs is not None else [0.0] * n
        message = self.transcript.add_assistant(completion.token_ids, logprobs)
        return message, n, completion.finish_reason == "stop"

    def close_turn(self) -> None:
        self.transcript.close_turn()

    def observation_cost(self, text: str) -> int | None:
        return self.transcript.observation_cost(text)

    def add_observation(self, text: str) -> None:
        self.transcript.add_observation(text)


class _TextPath:
    """The episode loop's view of a text transcript and a chat endpoint."""

    stop: tuple[int, ...] = ()

    def __init__(self, transcript: TextTranscript, chat):
        self.transcript, self.chat = transcript, chat

    def used(self) -> int:
        return self.transcript.context_tokens

    def reply(self, params: SamplingParams) -> tuple[str, int, bool]:
        reply = self.chat(list(self.transcript.messages), params)
        self.transcript.add_reply(reply)
        return reply.text, reply.completion_tokens, reply.finish_reason == "stop"

    def close_turn(self) -> None:
        """Nothing to close: a text message has no end-of-turn token."""

    def observation_cost(self, text: str) -> int | None:
        return None  # counted by the endpoint with the next request

    def add_observation(self, text: str) -> None:
        self.transcript.messages.append({"role": "user", "content": text})


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from `parts` (a SamplingParams seed: vLLM's and torch's range)."""
    text = "/".join(map(str, parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8]) >> 1


def turn_seed(seed: int, turn: int) -> int:
    """The sampling seed of turn `turn` (from 0) of the episode seeded `seed`."""
    return derive_seed(seed, turn)


def _play(
    path: _TokenPath | _TextPath,
    sandbox: Sandbox,
    config: EpisodeConfig,
    started: float,
    seed: int | None = None,
) -> EpisodeResult:
    """The episode loop, the same for both paths."""
    tools = Tools(sandbox, config.tools)
    turns: list[TurnRecord] = []
    termination, error = "max_turns", None
    gen_total = tool_total = 0.0
    for index in range(config.max_turns):
        budget = config.max_context_tokens - path.used()
        if budget < 1:
            termination = "context_limit"
            break
        cap = min(budget, config.max_turn_tokens or budget)
        params = dataclasses.replace(
            config.sampling,
            max_tokens=cap,
            stop_token_ids=path.stop,
            seed=config.sampling.seed if seed is None else turn_seed(seed, index),
        )
        t0 = time.monotonic()
        try:
            message, n, ended = path.reply(params)
        except Exception as e:  # the engine failed: end this episode, keep the others going
            termination, error = "generation_error", f"{type(e).__name__}: {e}"
            break
        gen_s = time.monotonic() - t0
        gen_total += gen_s
        # a reply that ran out of the context (a cut turn, cap < budget, leaves room to close
        # it); the text path learns the conversation's size with the reply, and may find it over
        if (not ended and cap == budget) or path.used() > config.max_context_tokens:
            turns.append(TurnRecord(index, None, "", False, False, False, n, 0, gen_s, 0.0))
            termination = "context_limit"
            break

        t0 = time.monotonic()
        command, tool_error, timed_out, submitted = None, False, False, False
        try:
            if not ended:  # cut by max_turn_tokens: close it (not sampled), never execute it
                path.close_turn()
                text, format_error = CUT_TURN.format(n=n) + "\n" + tools.prompt_line(), True
            else:
                parsed = extract_command(message)
                command, format_error = parsed.command, parsed.format_error is not None
                if parsed.format_error is not None:
                    text = parsed.format_error + "\n" + tools.prompt_line()
                else:
                    obs = tools.run(parsed.command)
                    text, tool_error = obs.text, obs.tool_error
                    timed_out, submitted = obs.timed_out, obs.submitted
        except SANDBOX_FAILURES as e:  # the sandbox itself failed (container gone, engine down)
            tool_s = time.monotonic() - t0
            tool_total += tool_s
            termination, error = "sandbox_error", f"{type(e).__name__}: {e}"
            turns.append(TurnRecord(index, command, "", False, False, False, n, 0, gen_s, tool_s))
            break
        tool_s = time.monotonic() - t0
        tool_total += tool_s

        if submitted:
            turns.append(TurnRecord(index, command, "", False, False, False, n, 0, gen_s, tool_s))
            termination = "submitted"
            break
        cost = path.observation_cost(text)
        turns.append(
            TurnRecord(
                index, command, text, format_error, tool_error, timed_out, n, cost, gen_s, tool_s
            )
        )
        if cost is not None and path.used() + cost >= config.max_context_tokens:
            termination = "context_limit"  # no room for the observation and another turn
            break
        path.add_observation(text)

    patch = None
    if termination != "sandbox_error":
        t0 = time.monotonic()
        try:
            patch = sandbox.diff()
        except SANDBOX_FAILURES as e:
            termination, error = "sandbox_error", f"diff failed: {type(e).__name__}: {e}"
        tool_total += time.monotonic() - t0
    return EpisodeResult(
        path.transcript,
        turns,
        termination,
        patch,
        error,
        generation_s=gen_total,
        tool_s=tool_total,
        total_s=time.monotonic() - started,
    )


@dataclass(frozen=True)
class Score:
    """How an episode scored: the grade (None when not graded) and PAPER.md section 4's reward."""

    grade: Grade | None
    resolved: bool
    reward: float
    turn_penalty: float
    grading_s: float

    @property
    def outcome(self) -> str:
        return self.grade.outcome if self.grade else "not_graded"


def score_episode(
    task: Task,
    result: EpisodeResult,
    *,
    backend: str,
    max_turns: int,
    threshold: int = 10,
    grade_unsubmitted: bool = True,
    timeout: float = 1800.0,
) -> Score:
    """Grade `result.patch` in a fresh sandbox and compute the reward. Not graded (resolved
    False): a sandbox error (no trustworthy diff), an empty patch, and unsubmitted episodes when
    `grade_unsubmitted` is False."""
    graded = (
        result.termination != "sandbox_error"
        and bool(result.patch and result.patch.strip())
        and (result.submitted or grade_unsubmitted)
    )
    grade, grading_s = None, 0.0
    if graded:
        t0 = time.monotonic()
        grade = grade_patch(task, result.patch, backend=backend, timeout=timeout)
        grading_s = time.monotonic() - t0
    resolved = bool(grade and grade.resolved)
    penalty = turn_penalty(len(result.turns), max_turns, threshold)
    return Score(grade, resolved, float(resolved) + penalty, penalty, grading_s)
