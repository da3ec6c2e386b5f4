"""Issue texts the way users write them: what I ran, what I expected, what I got, a snippet.

An issue names the function it is about (and at difficulty 1 its file) and shows one call with
the expected and the actual outcome, both computed by running the correct and the buggy code. It
never says where the bug is or how to fix it. Several titles and bodies per kind of symptom keep
the wording varied; a family adds at most one sentence about the symptom.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What one call did: returned `value`, or raised `error` (an exception class name)."""

    value: object = None
    error: str | None = None
    message: str = ""

    def agrees(self, other: Outcome) -> bool:
        if self.error or other.error:
            return self.error == other.error
        return bool(self.value == other.value) and type(self.value) is type(other.value)

    def short(self) -> str:
        return f"`{self.error}`" if self.error else f"`{self.value!r}`"

    def got(self) -> str:
        if self.error:
            detail = f": {self.message}" if self.message else ""
            return f"it raises `{self.error}{detail}`"
        return f"it returns `{self.value!r}`"

    def expected(self) -> str:
        return f"a `{self.error}`" if self.error else f"`{self.value!r}`"


@dataclass(frozen=True)
class Report:
    """What an issue is about."""

    function: str
    package: str
    module: str | None
    """`package.module` path is named only at difficulty 1."""
    call: str
    expected: Outcome
    got: Outcome
    family: str
    doc: str
    omitted: str | None = None
    """Parameter left at its default in the call, if any."""


def _title(r: Report, rng: random.Random) -> str:
    f = f"`{r.function}`"
    if r.expected.error and r.got.error:
        options = [
            f"{f} raises {r.got.error} instead of {r.expected.error}",
            f"Wrong exception type from {f}",
        ]
    elif r.expected.error:
        options = [f"{f} does not reject bad input", f"No {r.expected.error} from {f}"]
    elif r.got.error:
        options = [f"{f} crashes with {r.got.error}", f"{r.got.error} from {f} on valid input"]
    else:
        options = [
            f"{f} returns the wrong result",
            f"Wrong result from {f}",
            f"{f} gives {r.got.short()} instead of {r.expected.short()}",
        ]
    return rng.choice(options)


def _family_sentence(r: Report) -> str:
    if r.family == "wrong_constant" and r.omitted:
        return f"I left out `{r.omitted}` and relied on its default value."
    return {
        "formatting": "The text comes out in a different format than the docs describe.",
        "missing_branch": "This input looks like a case the function is meant to handle.",
        "wrong_exception": "My code catches the documented exception, so this breaks it.",
        "swapped_arguments": "It looks like the values get mixed up somewhere.",
        "off_by_one": "The result looks like it is off by one element.",
    }.get(r.family, "")


def issue_text(r: Report, rng: random.Random) -> str:
    """The problem statement for `r`, wording chosen with `rng`."""
    where = f"`{r.package}/{r.module}.py`" if r.module else f"the `{r.package}` package"
    source = f"{r.package}.{r.module}" if r.module else r.package
    snippet = f"```python\nfrom {source} import {r.function}\n\nprint({r.call})\n```"
    extra = _family_sentence(r)
    extra = f"\n\n{extra}" if extra else ""
    bodies = [
        f"I'm using `{r.function}` from {where} and it does not do what its docstring says "
        f'("{r.doc}").\n\n{snippet}\n\nI expected {r.expected.expected()}, but '
        f"{r.got.got()}.{extra}",
        f"Steps to reproduce:\n\n{snippet}\n\nExpected: {r.expected.expected()}\n"
        f"Actual: {r.got.got()}\n\n`{r.function}` lives in {where}.{extra}",
        f"Hi, I ran into this while calling `{r.function}` ({where}).{extra}\n\n{snippet}\n\n"
        f'The docstring says "{r.doc}", so I would expect {r.expected.expected()} here. '
        f"Instead {r.got.got()}.",
    ]
    return f"{_title(r, rng)}\n\n{rng.choice(bodies)}\n"
