"""One toy-SWE task from (seed, split, index): a small package with one bug, its tests, the issue.

    task = generate_task(seed=0, split="train", index=3)

How a task is made:
1. The family cycles with the index (every family appears in any 7 consecutive tasks), and the
   difficulty with the index divided by 7, so small suites still cover every family and difficulty:
   1 = one module, the issue names the file and the function, the bug is in that function;
   2 = two or three modules, the issue names only the function;
   3 = two to four modules, the issue names a public function that delegates to a helper in
       another module, and the bug is in the helper (the fix must be located across modules).
2. Functions come from `families.TEMPLATES`, named and filled from the split's `vocab` pool; the
   bug replaces one text of one function (`Template.bugs`).
3. Every example call is run on the correct and on the buggy code: agreeing calls become the
   repository's tests (they pass at base_commit), one differing call becomes the issue's example
   and, with the other differing calls (at most two per function), the hidden tests of
   `test_patch`. Running pytest for real (`build.py`) then confirms FAIL_TO_PASS / PASS_TO_PASS.

Everything is drawn from `random.Random(f"toy-swe:{seed}:{split}:{index}")`, so a task depends on
nothing but those three values (eval tasks do not change when the train count changes).
"""

from __future__ import annotations

import ast
import copy
import difflib
import random
from dataclasses import dataclass, field
from string import Template as Subst

from swerl.swe.toy.families import FAMILIES, TEMPLATES, WRAPPER_VERBS, Template, templates_for
from swerl.swe.toy.issues import Outcome, Report, issue_text
from swerl.swe.toy.vocab import POOLS, Pool

MAX_LINES = 60  # source files stay short enough for a tiny model's context
DIFFICULTIES = (1, 2, 3)


class ToyGenerationError(RuntimeError):
    """A generated task is unusable: a generator bug; the message names the task."""


@dataclass
class Function:
    name: str
    module: str
    source: str
    """The correct code."""
    buggy: str | None = None
    """The code with the bug, for the one function that has it."""
    examples: list[tuple] = field(default_factory=list)
    helper: Function | None = None
    """The function this one delegates to (difficulty 3 wrappers)."""
    template: Template | None = None
    roles: dict[str, str] = field(default_factory=dict)
    unit: str = ""

    def code(self, with_bug: bool) -> str:
        return self.buggy if with_bug and self.buggy is not None else self.source

    def outcome(self, args: tuple, with_bug: bool) -> Outcome:
        """Run `name(*args)` on the correct or the buggy code."""
        namespace: dict = {}
        if self.helper is not None:
            exec(self.helper.code(with_bug), namespace)  # noqa: S102 - our own generated code
        exec(self.code(with_bug), namespace)  # noqa: S102
        try:
            return Outcome(value=namespace[self.name](*copy.deepcopy(args)))
        except Exception as e:  # the outcome of a buggy call is data here
            return Outcome(error=type(e).__name__, message=str(e))


@dataclass(frozen=True)
class ToyTask:
    """A generated task before its tests are run (see `build.py`)."""

    instance_id: str
    package: str
    split: str
    files: dict[str, str]
    """The repository at base_commit (bug in, hidden tests out)."""
    patch: str
    test_patch: str
    test_file: str
    hidden_tests: list[str]
    problem_statement: str
    meta: dict


def _render(template: Template, name: str, roles: dict[str, str], unit: str, text: str) -> str:
    return Subst(text).substitute(fn=name, unit_word=unit, **roles)


def _make_function(t: Template, module: str, pool: Pool, rng: random.Random) -> Function:
    name = f"{t.verb}_{rng.choice(pool.nouns)}"
    roles = {role: rng.choice(pool.roles[role]) for role in t.roles}
    if len(set(roles.values())) != len(roles):
        raise ToyGenerationError(f"template {t.verb}: two roles got the same name {roles}")
    words = list(pool.words)
    rng.shuffle(words)
    unit = rng.choice(pool.units)
    source = _render(t, name, roles, unit, t.source)
    return Function(
        name, module, source, examples=t.examples(rng, words), template=t, roles=roles, unit=unit
    )


def _inject(fn: Function, bug: tuple[str, str]) -> None:
    """Put `bug` ((correct text, buggy text) in placeholder form) into `fn`."""
    t = fn.template
    assert t is not None
    old, new = (_render(t, fn.name, fn.roles, fn.unit, text) for text in bug)
    if fn.source.count(old) != 1:
        raise ToyGenerationError(f"template {t.verb}: bug text {old!r} is not found exactly once")
    fn.buggy = fn.source.replace(old, new)


def _signature(source: str) -> tuple[list[str], int, str]:
    """(parameter names, how many are required, docstring) of the one function in `source`."""
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    names = [a.arg for a in node.args.args]
    return names, len(names) - len(node.args.defaults), ast.get_docstring(node) or ""


def _wrapper(helper: Function, module: str, pool: Pool, rng: random.Random) -> Function:
    params, required, doc = _signature(helper.source)
    params = params[:required]
    name = f"{rng.choice(WRAPPER_VERBS)}_{rng.choice(pool.nouns)}"
    joined = ", ".join(params)
    source = f'def {name}({joined}):\n    """{doc}"""\n    return {helper.name}({joined})\n'
    examples = [args for args in helper.examples if len(args) == required]
    return Function(name, module, source, examples=examples, helper=helper)


def _call(fn: Function, args: tuple) -> str:
    return f"{fn.name}({', '.join(repr(a) for a in args)})"


def _check(fn: Function, args: tuple, outcome: Outcome) -> list[str]:
    if outcome.error:
        return [f"    with pytest.raises({outcome.error}):", f"        {_call(fn, args)}"]
    op = "is" if outcome.value is None else "=="
    return [f"    assert {_call(fn, args)} {op} {outcome.value!r}"]


def _split_examples(fn: Function) -> tuple[list[tuple], list[tuple[tuple, Outcome, Outcome]]]:
    """(calls whose outcome the bug does not change, [(call, correct, buggy)] that it changes)."""
    same, differ = [], []
    for args in fn.examples:
        good, bad = fn.outcome(args, with_bug=False), fn.outcome(args, with_bug=True)
        if good.agrees(bad):
            same.append(args)
        else:
            differ.append((args, good, bad))
    return same, differ


def _module_source(package: str, module: str, functions: list[Function], with_bug: bool) -> str:
    imports = sorted(
        {f"from .{f.helper.module} import {f.helper.name}" for f in functions if f.helper}
    )
    head = f'"""{package}.{module}: helpers of the {package} package."""\n'
    parts = [head + ("\n" + "\n".join(imports) + "\n" if imports else "")]
    parts += [f.code(with_bug) for f in functions]
    return "\n\n".join(parts)


def unified_diff(path: str, old: str, new: str) -> str:
    """A git-style unified diff of one file (what `git diff` prints, without the index line)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return f"diff --git a/{path} b/{path}\n" + "".join(lines)


def task_difficulty(index: int) -> int:
    """The difficulty of task number `index` (of any seed and split): it cycles with index // 7."""
    if index < 0:
        raise ValueError(f"task index must be >= 0, got {index}")
    return DIFFICULTIES[(index // len(FAMILIES)) % len(DIFFICULTIES)]


def generate_task(seed: int, split: str, index: int, names: str | None = None) -> ToyTask:
    """The task number `index` of `split` for `seed` (pure: no files, no subprocesses).

    `names`: the split whose name pool the task draws from (default: its own). An eval task
    drawn from the train pool is still a task no train task equals (its own random stream), but
    a model can answer it with names it has seen: the learning benchmark's setting for models
    with no pretraining, which cannot copy names they never saw (README, learning benchmark).
    Its id carries the split (`toy__<package>-eval<index>`) so it never collides with a train
    task's id."""
    pool_name = names or split
    for value in (split, pool_name):
        if value not in POOLS:
            raise ValueError(f"unknown split {value!r}; known: {', '.join(POOLS)}")
    rng = random.Random(f"toy-swe:{seed}:{split}:{index}")
    pool = POOLS[pool_name]
    family = FAMILIES[index % len(FAMILIES)]
    difficulty = task_difficulty(index)
    package = rng.choice(pool.packages)
    n_modules = {1: 1, 2: rng.randint(2, 3), 3: rng.randint(2, 4)}[difficulty]
    modules = rng.sample(pool.modules, n_modules)

    bug_template = rng.choice(templates_for(family))
    others = [t for t in TEMPLATES if t is not bug_template]
    rng.shuffle(others)
    layout: dict[str, list[Function]] = {m: [] for m in modules}
    bug_module = modules[-1]  # at difficulty 3 the wrapper goes into modules[0]
    bug = _make_function(bug_template, bug_module, pool, rng)
    _inject(bug, rng.choice(bug_template.bugs[family]))
    layout[bug_module].append(bug)
    named = bug
    if difficulty == 3:
        named = _wrapper(bug, modules[0], pool, rng)
        layout[modules[0]].append(named)
    for module in modules:  # two or three functions per module (two if four modules)
        target = rng.randint(2, 3) if n_modules < 4 else 2
        while len(layout[module]) < target:
            layout[module].append(_make_function(others.pop(), module, pool, rng))
        rng.shuffle(layout[module])
    functions = [f for m in modules for f in layout[m]]
    # templates and wrappers never share a verb, so names are unique within a package
    assert len({f.name for f in functions}) == len(functions), functions

    base: dict[str, str] = {}
    fixed: dict[str, str] = {}
    for module in modules:
        path = f"{package}/{module}.py"
        base[path] = _module_source(package, module, layout[module], with_bug=True)
        fixed[path] = _module_source(package, module, layout[module], with_bug=False)
    exports = "\n".join(
        f"from .{m} import {', '.join(sorted(f.name for f in layout[m]))}" for m in modules
    )
    base[f"{package}/__init__.py"] = f'"""{package}: a small package."""\n\n{exports}\n'

    test_path = f"tests/test_{package}.py"
    names = ", ".join(sorted(f.name for f in functions))
    lines = ["import pytest", "", f"from {package} import {names}", ""]
    hidden_lines: list[str] = []
    hidden: list[str] = []
    report_args = None
    per_function = 2 if len(functions) <= 6 else 1  # keeps the test file under MAX_LINES
    for fn in functions:
        with_bug = fn is bug or fn is named
        same, differ = _split_examples(fn)
        if with_bug and not differ:
            raise ToyGenerationError(f"{split}/{index}: no example shows the bug in {fn.name}")
        kept = same[:per_function]
        if kept:
            lines += ["", f"def test_{fn.name}():"]
            for args in kept:
                outcome = fn.outcome(args, with_bug=False)
                lines += _check(fn, args, outcome)
            lines.append("")
        if with_bug:
            if fn is named:
                report_args = rng.choice(differ)
            test = f"test_{fn.name}_reported_case"
            hidden.append(f"{test_path}::{test}")
            hidden_lines += ["", f"def {test}():"]
            for args, good, _ in differ[:2]:
                hidden_lines += _check(fn, args, good)
            hidden_lines.append("")
    base[test_path] = "\n".join(lines).rstrip("\n") + "\n"
    with_hidden = base[test_path] + "\n" + "\n".join(hidden_lines).rstrip("\n") + "\n"
    for path in [*base, "with hidden tests"]:
        text = base.get(path, with_hidden)
        if text.count("\n") >= MAX_LINES:
            raise ToyGenerationError(f"{split}/{index}: {path} has {text.count(chr(10))} lines")

    assert report_args is not None
    args, good, bad = report_args
    params, required, doc = _signature(named.source)
    report = Report(
        function=named.name,
        package=package,
        module=bug_module if difficulty == 1 else None,
        call=_call(named, args),
        expected=good,
        got=bad,
        family=family,
        doc=doc,
        omitted=params[len(args)] if len(args) < len(params) else None,
    )
    bug_path = f"{package}/{bug_module}.py"
    meta = {
        "split": split,
        "names": pool_name,
        "index": index,
        "family": family,
        "difficulty": difficulty,
        "files_touched": 1,
        "modules": n_modules,
        "template": bug_template.verb,
        "bug_file": bug_path,
        "bug_function": bug.name,
        "issue_function": named.name,
    }
    return ToyTask(
        instance_id=f"toy__{package}-{index}"
        if pool_name == split
        else f"toy__{package}-{split}{index}",
        package=package,
        split=split,
        files=dict(sorted(base.items())),
        patch=unified_diff(bug_path, base[bug_path], fixed[bug_path]),
        test_patch=unified_diff(test_path, base[test_path], with_hidden),
        test_file=test_path,
        hidden_tests=hidden,
        problem_statement=issue_text(report, rng),
        meta=meta,
    )
