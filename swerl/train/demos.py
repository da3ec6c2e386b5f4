"""Scripted demonstrations: a toy-SWE task's gold patch played as an agent episode in our
scaffold, for the short SFT that gives a tiny model its weak prior (the learning benchmark's base
policy, issue 8).

    version = publish_demos(lake, tasks="toy-swe", model="<models version>", split="train")
    train_rft(lake, "<models version>", [version], RFTConfig(lr=1e-3, epochs=4, batch_size=8))

A demo is a list of assistant messages (a line of reasoning and one ```command block each):
locate the function (`open FILE` when the issue names the file, else `grep -rn "def NAME" PKG`
then `open`; for a helper bug the helper is looked up the same way), one `edit START:END` per
changed block of the gold patch with the fixed lines, then `submit`. The messages are played by
`ReplayGenerator` through the rollout's own episode code (`swerl.agent.rollout`), in a real
sandbox, and graded in a fresh one: prompts, observations, token ids and loss masks are exactly
what an episode of the policy would have, and `resolved` is the real grade, not an assumption.

Imperfect on purpose (seeded per task and sample): with probability `detour_rate` the demo takes
one wasted turn (`ls`, a look at the test file, or running the issue's example); with probability
`wide_rate` an edit rewrites one unchanged line above the fix as well. Both still resolve the
task; a demo that does not (a bug in this module) raises, it is never stored as a success.

Bad habits on purpose (both default 0; one uniform draw per demo picks at most one): with
probability `give_up_rate` the demo opens the buggy file and then submits it unchanged
(`GIVE_UP`, reward 0); with probability `dither_rate` it opens the buggy file and then looks
around (`DITHER`: `ls`, `grep`) until the episode runs out of turns (reward -1 with the turn
penalty), or, with probability `dither_stop` after each look, stops looking and fixes the bug
late (resolved, turns wasted). A habit demo is graded like any episode and stored as what it
is (unresolved unless it fixed the bug late); a give-up or dithering demo that
resolves, or ends otherwise, raises. Behaviour cloning of all demos
(`RFTConfig(resolved_only=False)`) gives a policy with that habit at one early decision, whose
cost only the reward shows: rejection fine-tuning on its own successes and DAPO should unlearn
it, and the flipped-advantage control should not (the learning benchmark, issue 8). Dithering is
the habit both parts of the reward agree on (no success, and the turn penalty's -1); giving up
scores 0, above a failure that runs out of turns, so DAPO's groups with no success favour it.
"""

from __future__ import annotations

import random
import re
import shlex
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

from swerl.agent.chat import ChatFormat
from swerl.agent.rollout import EpisodeRows, Prompts, RolloutConfig, config_record, one_episode
from swerl.inference.replay import ReplayGenerator
from swerl.lake import Lake
from swerl.swe.task import Task, load_tasks

STAGE = "demos"
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")
ISSUE_CODE = re.compile(r"```python\n(.*?)```", re.DOTALL)

FAMILY_REASON = {
    "wrong_operator": "An operator in it is the wrong one.",
    "off_by_one": "An index or bound in it is off by one.",
    "wrong_constant": "A constant in it has the wrong value.",
    "missing_branch": "It does not handle that case at all.",
    "swapped_arguments": "Two values in it are used in the wrong order.",
    "wrong_exception": "It raises the wrong exception type.",
    "formatting": "It formats the text the wrong way.",
}
GIVE_UP = "The code looks right to me. I will submit it as it is."
DITHER = "I am not sure yet. Let me look around more."


class DemoError(RuntimeError):
    """A demonstration that cannot be built or does not resolve its task; names the task."""


@dataclass(frozen=True)
class DemoConfig:
    """How demonstrations are scripted and played."""

    samples: int = 1
    """Demos per task (they differ by their seeded imperfections)."""
    detour_rate: float = 0.3
    """Probability of one wasted turn before the fix."""
    wide_rate: float = 0.2
    """Probability that an edit also rewrites the unchanged line above the fix."""
    give_up_rate: float = 0.0
    """Probability that the demo opens the buggy file and submits it unchanged (an unresolved
    demo: a scripted bad habit, see the module docstring)."""
    dither_rate: float = 0.0
    """Probability that the demo opens the buggy file and then looks around until it runs out of
    turns (the other scripted bad habit; `give_up_rate + dither_rate` <= 1)."""
    dither_stop: float = 0.0
    """After each look, the probability that a dithering demo stops looking and types the fix
    and `submit` (when they fit in the turns left; else it looks on until the turns run out): a
    resolved demo with wasted looks, so the habit costs turns as well as successes. 0: every
    dithering demo runs out of turns (and draws no extra random numbers)."""
    seed: int = 0
    """Seed of the imperfections (mixed with the task and sample)."""
    backend: str = "local"
    """Sandbox backend the demos are played and graded in."""
    fix: str = "edit"
    """How the fix is typed: `edit` (line range + the whole new lines) or `replace` (the
    shortest unique SEARCH around the change, in whole words, and its REPLACE: fewer tokens to
    copy, which a tiny model learns far sooner)."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.fix not in ("edit", "replace"):
            raise ValueError(f"fix must be edit or replace, got {self.fix!r}")
        rates = (
            self.detour_rate,
            self.wide_rate,
            self.give_up_rate,
            self.dither_rate,
            self.dither_stop,
        )
        if not all(0 <= p <= 1 for p in rates) or self.give_up_rate + self.dither_rate > 1:
            raise ValueError(
                "detour_rate, wide_rate, give_up_rate, dither_rate and dither_stop must be "
                "probabilities, give_up_rate + dither_rate at most 1; got "
                f"{rates}"
            )


@dataclass(frozen=True)
class Edit:
    """Replace lines start..end (1-based, inclusive; end = start - 1 inserts) of `path`."""

    path: str
    start: int
    end: int
    text: str


def patch_edits(patch: str, files: dict[str, str]) -> list[Edit]:
    """The gold patch as `edit` calls on the base files: one per maximal run of changed lines,
    in the order that keeps line numbers valid (bottom-up within a file)."""
    edits: list[Edit] = []
    path = None
    old = 0
    block: tuple[int, list[str], list[str]] | None = None  # (start, removed, added)

    def flush() -> None:
        nonlocal block
        if block is not None:
            start, removed, added = block
            edits.append(Edit(path, start, start + len(removed) - 1, "".join(added)))
            block = None

    for line in patch.splitlines(keepends=True):
        if line.startswith("--- "):
            flush()
        elif line.startswith("+++ "):
            path = line[4:].strip().removeprefix("b/")
            if path not in files:
                raise DemoError(f"the patch changes {path}, which is not in the repository")
        elif m := HUNK.match(line):
            flush()
            old = int(m.group(1))
            if m.group(2) == "0":  # a hunk that only inserts names the line before it
                old += 1
        elif line.startswith("-") or line.startswith("+"):
            if block is None:
                block = (old, [], [])
            (block[1] if line[0] == "-" else block[2]).append(line[1:])
            old += line[0] == "-"
        elif line.startswith(" "):
            flush()
            old += 1
    flush()
    by_file: dict[str, list[Edit]] = {}
    for e in edits:
        by_file.setdefault(e.path, []).append(e)
    return [e for f in by_file for e in sorted(by_file[f], key=lambda e: -e.start)]


def _say(reason: str, command: str) -> str:
    return f"{reason}\n```command\n{command}\n```"


def demo_messages(
    task: Task, rng: random.Random, config: DemoConfig, max_turns: int | None = None
) -> list[str]:
    """The assistant messages of one demonstration of `task` (see the module docstring); a
    dithering demo needs the episode's `max_turns` (it looks around until they run out)."""
    meta = task.meta or {}
    files = task.repo_files or {}
    for key in ("bug_file", "bug_function", "issue_function", "family", "difficulty"):
        if key not in meta:
            raise DemoError(f"task {task.instance_id}: meta has no {key!r} (not a toy task?)")
    bug_file, bug_fn, issue_fn = meta["bug_file"], meta["bug_function"], meta["issue_function"]
    package = bug_file.split("/")[0]
    edits = patch_edits(task.patch, files)
    if not edits:
        raise DemoError(f"task {task.instance_id}: the gold patch has no changed lines")

    out: list[str] = []
    if bug_file in task.problem_statement:
        out.append(
            _say(
                f"The issue names `{issue_fn}` in `{bug_file}`. I will open it.", f"open {bug_file}"
            )
        )
    else:
        issue_file = _defining_file(files, issue_fn, task)
        out.append(
            _say(
                f"I need to find where `{issue_fn}` is defined.",
                f'grep -rn "def {issue_fn}" {package}',
            )
        )
        if issue_fn != bug_fn:
            out.append(
                _say(f"`{issue_fn}` is in `{issue_file}`. I will read it.", f"open {issue_file}")
            )
            out.append(
                _say(
                    f"`{issue_fn}` calls `{bug_fn}`. I will find that one.",
                    f'grep -rn "def {bug_fn}" {package}',
                )
            )
        out.append(_say(f"`{bug_fn}` is in `{bug_file}`. I will open it.", f"open {bug_file}"))
    if rng.random() < config.detour_rate:
        at = rng.randrange(len(out))  # before the last `open`: the open file stays the bug file
        out.insert(at, _detour(task, files, rng))
    located = len(out)  # the messages up to the buggy file's `open`
    lines = files[bug_file].splitlines(keepends=True)
    reason = FAMILY_REASON.get(meta["family"], "It does not do what its docstring says.")
    current = dict(files)  # the files as the fixes so far left them (edits run bottom-up)
    for e in edits:
        if config.fix == "replace":
            out.append(_replace_message(e, current, reason, bug_fn, task))
            continue
        start, text = e.start, e.text
        if e.start > 1 and rng.random() < config.wide_rate:
            start, text = e.start - 1, lines[e.start - 2] + text
        target = "" if e.path == bug_file else f"--file {e.path} "
        where = f"line {start}" if start == e.end else f"lines {start}-{e.end}"
        if e.end < start:
            where = f"before line {start}"
        out.append(
            _say(
                f"{reason} I will fix {where} of `{bug_fn}`.",
                f"edit {target}{start}:{e.end} <<'EOF'\n{text}EOF",
            )
        )
    habit = rng.random() if config.give_up_rate or config.dither_rate else 1.0
    if habit < config.give_up_rate:
        return [*out[:located], _say(GIVE_UP, "submit")]
    if habit < config.give_up_rate + config.dither_rate:
        if max_turns is None or max_turns <= located:
            raise DemoError(
                f"task {task.instance_id}: a dithering demo needs max_turns above its "
                f"{located} locating turns, got {max_turns}"
            )
        looks = [
            "ls",
            f"ls {package}",
            f'grep -rn "def {bug_fn}" {package}',
            f"grep -n return {bug_file}",
        ]
        fix = [*out[located:], _say("The fix is in place.", "submit")]
        dithered = out[:located]
        while len(dithered) < max_turns:
            dithered.append(_say(DITHER, rng.choice(looks)))
            stops = config.dither_stop and rng.random() < config.dither_stop
            if stops and len(dithered) + len(fix) <= max_turns:
                return dithered + fix  # a late fix: resolved, with wasted looks
        return dithered
    out.append(_say("The fix is in place.", "submit"))
    return out


def gives_up(messages: Sequence[str]) -> bool:
    """Whether a demo's messages are a give-up demo (`give_up_rate`)."""
    return bool(messages) and messages[-1].startswith(GIVE_UP)


def dithers(messages: Sequence[str]) -> bool:
    """Whether a demo's messages are a dithering demo that ran out of turns (`dither_rate`; one
    that stopped looking and fixed the bug, `dither_stop`, ends like any resolved demo)."""
    return bool(messages) and messages[-1].startswith(DITHER)


TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def minimal_replacement(text: str, old: str, new: str, at: int) -> tuple[str, str]:
    """The shortest (SEARCH, REPLACE) pair, cut at token boundaries, that turns `old` (found at
    offset `at` of `text`) into `new` and whose SEARCH occurs exactly once in `text`."""
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < min(len(old), len(new)) - prefix
        and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]
    ):
        suffix += 1
    # token boundaries of the whole text; the changed span is [lo, hi) of text
    bounds = sorted({0, len(text), *(m.start() for m in TOKEN.finditer(text))})
    lo, hi = at + prefix, at + len(old) - suffix
    lo = max(b for b in bounds if b <= lo)
    hi = min(b for b in bounds if b >= hi)
    grow_left = True
    while (hi == lo or text.count(text[lo:hi]) != 1 or text[lo:hi] != text[lo:hi].strip()) and (
        lo > 0 or hi < len(text)
    ):
        if (grow_left and lo > 0) or hi == len(text):
            lo = max(b for b in bounds if b < lo)
        else:
            hi = min(b for b in bounds if b > hi)
        grow_left = not grow_left
    fixed = text[:at] + new + text[at + len(old) :]
    return text[lo:hi], fixed[lo : hi + len(new) - len(old)]


def _replace_message(e: Edit, current: dict[str, str], reason: str, bug_fn: str, task: Task) -> str:
    """The `replace` call of one edit; updates `current` to the fixed text."""
    if e.path != task.meta["bug_file"]:
        raise DemoError(f"task {task.instance_id}: the fix touches {e.path}, not the open file")
    text = current[e.path]
    lines = text.splitlines(keepends=True)
    at = sum(len(x) for x in lines[: e.start - 1])
    old = "".join(lines[e.start - 1 : e.end])
    search, replacement = minimal_replacement(text, old, e.text, at)
    fixed = "".join(lines[: e.start - 1]) + e.text + "".join(lines[e.end :])
    if text.count(search) != 1 or text.replace(search, replacement, 1) != fixed:
        raise DemoError(f"task {task.instance_id}: replace {search!r} does not give the fix")
    current[e.path] = fixed
    return _say(
        f"{reason} I will fix it in `{bug_fn}`.",
        f"replace {shlex.quote(search)} {shlex.quote(replacement)}",
    )


def _defining_file(files: dict[str, str], function: str, task: Task) -> str:
    found = [p for p, text in sorted(files.items()) if f"def {function}(" in text]
    if not found:
        raise DemoError(f"task {task.instance_id}: no file defines {function}")
    return found[0]


def _detour(task: Task, files: dict[str, str], rng: random.Random) -> str:
    """One wasted (but harmless) turn."""
    tests = [p for p in sorted(files) if "test" in p.split("/")[-1]]
    choices = [_say("Let me see what is in the repository.", "ls")]
    if tests:
        choices.append(_say("Let me look at the tests first.", f"cat {tests[0]}"))
    code = ISSUE_CODE.search(task.problem_statement)
    if code:
        choices.append(
            _say("I will reproduce the issue first.", f"python - <<'EOF'\n{code.group(1)}EOF")
        )
    return rng.choice(choices)


def play_demo(
    task: Task,
    messages: list[str],
    chat: ChatFormat,
    config: RolloutConfig,
    *,
    sample: int,
    policy_version: str,
    prompts: Prompts | None = None,
) -> EpisodeRows:
    """Play `messages` as an episode of `task` (the rollout's own episode and grading code) and
    return its rows; the generator is recorded as `replay`, with no sampler log-probs."""
    replay = ReplayGenerator(messages, chat.encode, chat.end_of_turn_id)
    return one_episode(
        task,
        sample,
        replay,
        chat,
        config,
        policy_version,
        prompts or config.prompts(),
    )


def build_demos(
    tasks: Sequence[Task],
    chat: ChatFormat,
    rollout: RolloutConfig,
    config: DemoConfig = DemoConfig(),
    *,
    policy_version: str,
    workers: int = 2,
) -> list[EpisodeRows]:
    """`config.samples` played and graded demonstrations per task, in task and sample order,
    `workers` at a time (sandboxes and grading are subprocesses); raises `DemoError` when one
    does not resolve its task, or when a give-up or dithering demo does or ends otherwise."""
    jobs = [(task, s) for task in tasks for s in range(config.samples)]

    def one(job: tuple[Task, int]) -> EpisodeRows:
        task, s = job
        rng = random.Random(f"demo:{config.seed}:{task.instance_id}:{s}")
        messages = demo_messages(task, rng, config, rollout.episode.max_turns)
        rows = play_demo(task, messages, chat, rollout, sample=s, policy_version=policy_version)
        t = rows.trajectory
        kind, resolves, ends = "", True, "submitted"
        if gives_up(messages):
            kind, resolves = "give-up ", False
        elif dithers(messages):
            kind, resolves, ends = "dithering ", False, "max_turns"
        if bool(t["resolved"]) != resolves or t["termination"] != ends:
            raise DemoError(
                f"task {task.instance_id}: {kind}demo {s} ended {t['termination']} with grade "
                f"{t['grade_outcome']} (error: {t.get('error')}); messages: {t['messages']}"
            )
        return rows

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))


def publish_demos(
    lake: Lake,
    *,
    tasks: str,
    model: str,
    split: str | None = "train",
    limit: int | None = None,
    config: DemoConfig = DemoConfig(),
    rollout: RolloutConfig | None = None,
) -> tuple[str, str]:
    """Demonstrations of the tasks of `split` as new `trajectories` and `turns` versions (stage
    `rft`, generator `replay`, `policy_version` = `model`, whose tokenizer encodes them); the same
    inputs and parameters return the existing versions. Returns (trajectories, turns)."""
    from transformers import AutoTokenizer

    from swerl.train.checkpoint import resolve_model

    ref = resolve_model(lake, model)
    tasks_v = lake.resolve("tasks", tasks).version
    task_list = load_tasks(tasks_v, root=lake.root)
    if split is not None:
        task_list = [t for t in task_list if (t.meta or {}).get("split") == split]
    if not task_list:
        raise DemoError(f"tasks {tasks_v} has no task in split {split!r}")
    task_list = task_list[:limit] if limit is not None else task_list
    rollout = rollout or RolloutConfig(stage="rft", samples=config.samples, backend=config.backend)
    rollout = replace(rollout, stage="rft", samples=config.samples, backend=config.backend)
    parameters = {
        "demos": asdict(config),
        "rollout": config_record(rollout),  # with the prompts' hash, as the rollout stage
        "split": split,
        "instances": [t.instance_id for t in task_list],
    }
    inputs = {"tasks": tasks_v, "models": ref.id}
    fp_t = lake.fingerprint("trajectories", stage=STAGE, parameters=parameters, inputs=inputs)
    fp_u = lake.fingerprint("turns", stage=STAGE, parameters=parameters, inputs=inputs)
    done_t, done_u = lake.find("trajectories", fp_t), lake.find("turns", fp_u)
    if done_t is not None and done_u is not None:
        return done_t.version, done_u.version
    chat = ChatFormat(AutoTokenizer.from_pretrained(ref.path))
    rows = build_demos(task_list, chat, rollout, config, policy_version=ref.id)
    t_version = lake.write(
        "trajectories",
        [r.trajectory for r in rows],
        stage=STAGE,
        parameters=parameters,
        inputs=inputs,
    )
    u_version = lake.write(
        "turns",
        [u for r in rows for u in r.turns],
        stage=STAGE,
        parameters=parameters,
        inputs=inputs,
    )
    return t_version, u_version
