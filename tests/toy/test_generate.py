"""Generation alone (no pytest runs): determinism, coverage, sizes, issue texts, disjoint splits."""

import ast
import builtins
import keyword
import re

import pytest

from swerl.swe.toy import task_difficulty, toy_tasks
from swerl.swe.toy.families import FAMILIES
from swerl.swe.toy.generate import MAX_LINES, generate_task
from swerl.swe.toy.vocab import POOLS


@pytest.fixture(scope="module")
def tasks():
    return toy_tasks(seed=0, n_train=48, n_eval=16)


def test_same_arguments_same_task_and_other_seeds_differ():
    assert generate_task(0, "train", 5) == generate_task(0, "train", 5)
    assert generate_task(0, "eval", 5) != generate_task(1, "eval", 5)


def test_eval_tasks_do_not_depend_on_the_train_count():
    assert toy_tasks(0, 2, 3)[2:] == toy_tasks(0, 9, 3)[9:]


def test_a_difficulty_filter_keeps_the_same_tasks_of_those_difficulties():
    every = toy_tasks(0, 42, 21)
    easy = toy_tasks(0, 10, 5, difficulties=[1])
    assert [t.meta["difficulty"] for t in easy] == [1] * 15
    assert [t.meta["index"] for t in easy[:10]] == [0, 1, 2, 3, 4, 5, 6, 21, 22, 23]
    by_id = {t.instance_id: t for t in every}
    assert all(by_id[t.instance_id] == t for t in easy if t.instance_id in by_id)
    two_three = toy_tasks(0, 14, 0, difficulties=(3, 2))
    assert {t.meta["difficulty"] for t in two_three} == {2, 3}
    assert [task_difficulty(i) for i in (0, 6, 7, 14, 20, 21)] == [1, 1, 2, 3, 3, 1]
    for bad in ([], [0], [1, 4]):
        with pytest.raises(ValueError, match="difficulties must be a non-empty subset"):
            toy_tasks(0, 1, 1, difficulties=bad)


def test_every_family_and_difficulty_in_each_split(tasks):
    for split in ("train", "eval"):
        metas = [t.meta for t in tasks if t.split == split]
        assert {m["family"] for m in metas} == set(FAMILIES)
        assert {m["difficulty"] for m in metas} == {1, 2, 3}
    train = [(t.meta["family"], t.meta["difficulty"]) for t in tasks if t.split == "train"]
    assert len(set(train)) == 21  # every combination


def test_ids_are_unique_and_follow_the_naming(tasks):
    ids = [t.instance_id for t in tasks]
    assert len(ids) == len(set(ids))
    for t in tasks:
        assert t.instance_id == f"toy__{t.package}-{t.meta['index']}"


def test_repositories_are_small_and_the_bug_is_one_short_edit(tasks):
    for t in tasks:
        modules = [p for p in t.files if p.startswith(f"{t.package}/") and "__init__" not in p]
        assert 1 <= len(modules) <= 4
        assert len(modules) == t.meta["modules"]
        assert all(t.files[p].count("\n") < MAX_LINES for p in t.files), t.instance_id
        assert t.patch.count("\ndiff --git") == 0  # one file
        changed = [ln for ln in t.patch.splitlines() if ln[:1] in "+-" and ln[:3] not in "+++---"]
        assert 1 <= len(changed) <= 4, t.instance_id
        assert t.test_file in t.files and f"b/{t.test_file}" in t.test_patch
        # the hidden tests are not in the repository
        assert all(h.split("::")[1] not in t.files[t.test_file] for h in t.hidden_tests)


def test_issue_names_the_function_and_never_the_fix(tasks):
    for t in tasks:
        text = t.problem_statement
        assert f"`{t.meta['issue_function']}`" in text
        for line in t.patch.splitlines():
            if line[:1] in "+-" and line[:3] not in ("+++", "---") and line[1:].strip():
                assert line[1:].strip() not in text, (t.instance_id, line)
        file_named = t.meta["bug_file"] in text or t.meta["bug_file"][:-3].replace("/", ".") in text
        assert file_named == (t.meta["difficulty"] == 1), t.instance_id
        if t.meta["difficulty"] == 3:
            assert t.meta["bug_function"] not in text


def _surface(files: dict[str, str]) -> set[str]:
    """Identifiers, path parts and words inside non-docstring string literals."""
    out: set[str] = set()
    for path, text in files.items():
        out.update(re.findall(r"[A-Za-z_]\w*", path.removesuffix(".py")))
        tree = ast.parse(text)
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef) and ast.get_docstring(n) is not None
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                out.add(node.id)
            elif isinstance(node, ast.arg):
                out.add(node.arg)
            elif isinstance(node, ast.FunctionDef):
                out.add(node.name)
            elif isinstance(node, ast.Attribute):
                out.add(node.attr)
            elif isinstance(node, ast.ImportFrom):
                out.update((node.module or "").split("."))
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                out.update(re.findall(r"[A-Za-z_]\w*", node.value))
    return out


def _with_hidden_tests(t) -> dict[str, str]:
    added = [ln[1:] for ln in t.test_patch.splitlines()[4:] if ln.startswith("+")]
    return {**t.files, "hidden.py": t.files[t.test_file] + "\n".join(added) + "\n"}


# What train and eval may share: Python, pytest, the methods the templates call, the words of
# the templates' error messages and example text, and format specs (`:.2f`).
SCAFFOLD = (
    set(keyword.kwlist)
    | set(dir(builtins))
    | {"pytest", "raises", "join", "replace", "zfill", "rjust", "tests", "hidden", "__init__"}
    | {"must", "be", "zero", "positive", "out", "of", "one", "f"}
)


def test_eval_shares_no_surface_name_with_train(tasks):
    train = set().union(*(_surface(_with_hidden_tests(t)) for t in tasks if t.split == "train"))
    evals = set().union(*(_surface(_with_hidden_tests(t)) for t in tasks if t.split == "eval"))
    assert not evals & POOLS["train"].names()
    shared = {name for name in train & evals if not name.startswith("test_")}
    assert shared <= SCAFFOLD, sorted(shared - SCAFFOLD)
    # test function names are `test_<function>[_reported_case]`: their functions differ too
    assert not {n for n in train & evals if n.startswith("test_")}


def test_eval_tasks_from_the_train_names_are_new_tasks_with_their_own_ids(tasks):
    train = [t for t in tasks if t.split == "train"]
    shared = toy_tasks(seed=0, n_train=0, n_eval=16, eval_names="train")
    assert all(t.split == "eval" and t.meta["names"] == "train" for t in shared)
    assert all(t.instance_id == f"toy__{t.package}-eval{t.meta['index']}" for t in shared)
    assert not {t.instance_id for t in shared} & {t.instance_id for t in train}
    # the names come from the train pool, the tasks are new (no repository equals a train one)
    assert all(t.package in POOLS["train"].packages for t in shared)
    assert not {tuple(sorted(t.files.items())) for t in shared} & {
        tuple(sorted(t.files.items())) for t in train
    }
    # the default eval split is unchanged by the option's existence
    assert [t.meta["names"] for t in tasks if t.split == "eval"] == ["eval"] * 16
    with pytest.raises(ValueError, match="unknown split 'test'"):
        generate_task(0, "eval", 0, names="test")
