"""Token-faithful conversations: the prompt is tokenized once, assistant turns keep their sampled
ids, and each observation is appended as the token delta the chat template produces for it.

Why: re-rendering the whole conversation each turn and re-tokenizing it can give ids that differ
from the ones the policy sampled (BPE has many tokenizations of one text; templates may rewrite
earlier turns), and then the log-probs the trainer computes are for tokens the sampler never chose.
Here nothing sampled is ever re-tokenized.

How the observation delta is found without assuming a template's separators: render a dummy
conversation that ends in an assistant message, and the same conversation plus one user message
with the generation prompt; the text after the dummy assistant's content and end-of-turn token is
exactly what the template puts between a finished assistant turn and the next assistant turn.
The earlier text must not change when the user message is added; if it does, the template
re-renders earlier turns and we refuse it.

`fidelity_mismatches` is the independent check: render the whole finished conversation at once,
tokenize every piece but the assistant turns (which keep their sampled ids), and count the
positions where that differs from the trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Message = dict[str, str]

_MARK = "\u27e6swerl-{}\u27e7"  # not whitespace (templates may trim), unlikely in any text


class TemplateError(ValueError):
    """The chat template cannot be used token-faithfully; the message says why."""


@dataclass
class ChatFormat:
    """Token-level view of a tokenizer's chat template.

    `end_of_turn` is the token that ends an assistant turn when sampled (the tokenizer's eos
    token by default: `<|im_end|>` for ChatML / Qwen2.5)."""

    tokenizer: Any
    end_of_turn: str | None = None

    def __post_init__(self) -> None:
        if not self.tokenizer.chat_template:
            raise TemplateError("the tokenizer has no chat template")
        self.end_of_turn = self.end_of_turn or self.tokenizer.eos_token
        token_id = self.tokenizer.get_vocab().get(self.end_of_turn)
        if token_id is None:
            raise TemplateError(f"end-of-turn token {self.end_of_turn!r} is not in the vocabulary")
        self.end_of_turn_id: int = token_id
        self._delta_prefix, self._delta_suffix = self._observation_frame()

    # ---- rendering -----------------------------------------------------------------------------

    def render(self, messages: list[Message], add_generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def encode(self, text: str) -> list[int]:
        """Tokenize template text (special tokens in it are recognised, none are added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The first prompt (system + issue), with the generation prompt: tokenized once."""
        return self.encode(self.render(messages, add_generation_prompt=True))

    def assistant_text(self, sampled: list[int]) -> str:
        """The message content of a finished assistant turn (its ids minus the end-of-turn)."""
        body = sampled[:-1] if sampled and sampled[-1] == self.end_of_turn_id else sampled
        return self.decode(body)

    def observation_ids(self, observation: str) -> list[int]:
        """Ids to append after a finished assistant turn (its end-of-turn token included) so that
        the next assistant turn sees `observation` as a user message."""
        return self.encode(self._delta_prefix + observation + self._delta_suffix)

    def _observation_frame(self) -> tuple[str, str]:
        a, o = _MARK.format("assistant"), _MARK.format("observation")
        base = [
            {"role": "system", "content": _MARK.format("system")},
            {"role": "user", "content": _MARK.format("user")},
            {"role": "assistant", "content": a},
        ]
        before = self.render(base)
        after = self.render([*base, {"role": "user", "content": o}], add_generation_prompt=True)
        anchor = before.find(a + self.end_of_turn)
        if anchor < 0:
            raise TemplateError(
                f"the template does not end an assistant turn with {self.end_of_turn!r} right "
                "after its content; set ChatFormat(end_of_turn=...) to the token it uses"
            )
        anchor += len(a + self.end_of_turn)
        if after[:anchor] != before[:anchor]:
            raise TemplateError(
                "the template renders earlier turns differently once a user message follows; "
                "observations cannot be appended as token deltas"
            )
        delta = after[anchor:]
        if delta.count(o) != 1:
            raise TemplateError("the template does not render a user message's content verbatim")
        prefix, suffix = delta.split(o)
        return prefix, suffix

    # ---- the independent check -----------------------------------------------------------------

    def expected_ids(self, messages: list[Message], sampled: list[list[int]]) -> list[int]:
        """What a from-scratch rendering of `messages` gives, with each assistant message's text
        replaced by its sampled ids (`sampled[i]` for the i-th assistant message, end-of-turn
        token included)."""
        marked, k = [], 0
        for m in messages:
            if m["role"] == "assistant":
                marked.append({"role": "assistant", "content": _MARK.format(k)})
                k += 1
            else:
                marked.append(m)
        if k != len(sampled):
            raise ValueError(f"{k} assistant messages but {len(sampled)} sampled turns")
        text = self.render(marked, add_generation_prompt=marked[-1]["role"] != "assistant")
        ids: list[int] = []
        for i, ids_i in enumerate(sampled):
            mark = _MARK.format(i)
            head, text = text.split(mark, 1)
            ids += self.encode(head) + list(ids_i)
            ends_with_eot = bool(ids_i) and ids_i[-1] == self.end_of_turn_id
            if ends_with_eot and text.startswith(self.end_of_turn):
                text = text[len(self.end_of_turn) :]
        if messages[-1]["role"] == "assistant":
            return ids  # the trajectory ends with the last sampled token
        return ids + self.encode(text)


def count_mismatches(expected: list[int], actual: list[int]) -> int:
    """Positions where two id sequences differ, counting any length difference."""
    same_len = sum(a != b for a, b in zip(expected, actual, strict=False))
    return same_len + abs(len(expected) - len(actual))


@dataclass
class Transcript:
    """An episode's conversation as messages and, in step, as the exact token sequence the policy
    saw and produced: `loss_mask` is 1 on sampled tokens, `logprobs` holds the sampler's log-prob
    of each sampled token (0 elsewhere)."""

    chat: ChatFormat
    messages: list[Message]
    token_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]
    sampled: list[list[int]]

    @classmethod
    def start(cls, chat: ChatFormat, system: str, user: str) -> Transcript:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        ids = chat.prompt_ids(messages)
        return cls(chat, messages, ids, [0] * len(ids), [0.0] * len(ids), [])

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the first prompt (system + issue + generation prompt)."""
        return self.loss_mask.index(1) if 1 in self.loss_mask else len(self.token_ids)

    def add_assistant(self, ids: list[int], logprobs: list[float]) -> str:
        """Append a sampled turn as is; returns its message text."""
        if len(ids) != len(logprobs):
            raise ValueError(f"{len(ids)} sampled ids but {len(logprobs)} log-probs")
        text = self.chat.assistant_text(ids)
        self.messages.append({"role": "assistant", "content": text})
        self.sampled.append(list(ids))
        self.token_ids += ids
        self.loss_mask += [1] * len(ids)
        self.logprobs += list(logprobs)
        return text

    def close_turn(self) -> None:
        """End a reply that was cut before its end-of-turn token: append that token, not sampled
        (loss mask 0, log-prob 0), so the conversation can go on."""
        if not self.sampled or self.token_ids[-1] == self.chat.end_of_turn_id:
            raise ValueError("only a cut assistant turn (no end-of-turn token yet) can be closed")
        self.token_ids.append(self.chat.end_of_turn_id)
        self.loss_mask.append(0)
        self.logprobs.append(0.0)

    def add_observation(self, text: str) -> int:
        """Append an observation as the template's token delta; returns how many ids it took."""
        if not self.sampled or self.token_ids[-1] != self.chat.end_of_turn_id:
            raise ValueError("an observation can only follow an assistant turn that ended")
        delta = self.chat.observation_ids(text)
        self.messages.append({"role": "user", "content": text})
        self.token_ids += delta
        self.loss_mask += [0] * len(delta)
        self.logprobs += [0.0] * len(delta)
        return len(delta)

    def observation_cost(self, text: str) -> int:
        """Ids an observation would take, without appending it."""
        return len(self.chat.observation_ids(text))

    def fidelity_mismatches(self) -> int:
        """Token positions where a from-scratch rendering of the messages differs (0 expected)."""
        expected = self.chat.expected_ids(self.messages, self.sampled)
        eot = self.chat.end_of_turn_id
        last_cut = self.messages[-1]["role"] == "assistant" and self.sampled[-1][-1:] != [eot]
        if last_cut and self.token_ids[-1] == eot:  # the last turn was cut and closed
            expected.append(eot)
        return count_mismatches(expected, self.token_ids)
