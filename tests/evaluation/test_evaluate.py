"""The evaluate stage end to end on toy-SWE tasks with the local backend: real sandboxes, real
grading. A scripted generator (it applies the gold patch in a known number of attempts per task)
makes the resolved counts known in advance; the tiny random model runs through the hf backend."""

from __future__ import annotations

import json
import threading

import pytest
from swebench.harness.utils import get_predictions_from_file
from transformers import AutoTokenizer

from swerl.agent.episode import EpisodeConfig
from swerl.evaluation.evaluate import evaluate
from swerl.inference.base import Completion, SamplingParams
from swerl.lake import Lake, connect
from swerl.models.tiny import TinySpec, build_tiny_model
from swerl.report import report_figures
from swerl.swe.task import load_tasks
from swerl.swe.toy import publish_toy_suite

CORPUS = ["def f(x):\n    return x + 1\n", "ls -la\ngit diff\nsubmit\n"] * 20


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    lake = Lake(root)
    tasks = publish_toy_suite(lake, seed=0, n_train=1, n_eval=3)
    model = build_tiny_model(root.parent / "tiny", TinySpec(vocab_size=400), CORPUS)
    return lake, tasks, model


class ScriptedGenerator:
    """Plays an agent: in `good[task]` of each task's attempts it applies the gold patch and
    submits; in the others it submits at once (`loop=False`) or runs `ls` until the turn limit.
    Which attempt gets which script depends on thread timing; how many do is fixed."""

    name = "scripted"
    has_logprobs = False

    def __init__(self, model_dir, tasks, good: dict[str, int], loop: set[str]):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.eot = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.tasks, self.good, self.loop = tasks, good, loop
        self.started: dict[str, int] = {}
        self.calls = 0
        self.lock = threading.Lock()

    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        out = []
        for prompt, p in zip(prompts, params, strict=True):
            text = self.tokenizer.decode(prompt)
            task = next(t for t in self.tasks if t.problem_statement in text)
            with self.lock:
                self.calls += 1
                first = text.count("<|im_start|>assistant") == 1
                if first:
                    self.started[task.instance_id] = self.started.get(task.instance_id, 0) + 1
                good = self.started[task.instance_id] <= self.good.get(task.instance_id, 0)
            if first and good:
                command = f"git apply <<'EOF'\n{task.patch}EOF"
            elif "git apply" in text or task.instance_id not in self.loop:
                command = "submit"
            else:
                command = "ls"
            ids = self.tokenizer.encode(f"Next step.\n```command\n{command}\n```") + [self.eot]
            assert len(ids) <= p.max_tokens
            out.append(Completion(ids, None, "stop"))
        return out


FAST = EpisodeConfig(max_turns=3)


def eval_config(attempts: int, episode: EpisodeConfig = FAST, **kw) -> dict:
    """Local sandboxes, a turn penalty threshold below the small turn limit."""
    return dict(attempts=attempts, episode=episode, backend="local", turn_penalty_threshold=1, **kw)


def test_scripted_attempts_give_known_figures_rows_and_predictions(setup):
    lake, tasks_v, model = setup
    tasks = load_tasks(tasks_v, root=lake.root)
    eval_ids = [t.instance_id for t in tasks if t.meta["split"] == "eval"]
    a, b, c = eval_ids
    gen = ScriptedGenerator(model, tasks, good={a: 3, b: 1}, loop={c})
    kw = dict(
        model=str(model),
        tasks="toy-swe",
        split="eval",
        **eval_config(3, max_live_sandboxes=3),
    )
    out = evaluate(lake, generator=gen, **kw)
    assert not out.reused and out.resumed_attempts == 0

    rows = lake.read("evals", out.evals).to_pylist()
    assert [(r["instance_id"], r["attempt"]) for r in rows] == [
        (t, i) for t in eval_ids for i in range(3)
    ]
    solved = {t: sum(r["resolved"] for r in rows if r["instance_id"] == t) for t in eval_ids}
    assert solved == {a: 3, b: 1, c: 0}
    for r in rows:
        assert r["model_version"].startswith("path:") and r["generator"] == "scripted"
        assert json.loads(r["sampling"])["temperature"] == 1.0
        assert json.loads(r["config"])["episode"]["max_turns"] == 3
        if r["resolved"]:
            assert r["termination"] == "submitted" and r["turns"] == 2
            assert r["reward"] == 1.0 + r["turn_penalty"] and r["turn_penalty"] < 0
            assert r["grade_outcome"] == "resolved" and "+" in r["patch"]
        elif r["instance_id"] == c:
            assert r["termination"] == "max_turns" and r["turns"] == 3
            assert r["grade_outcome"] == "not_graded"  # nothing changed: nothing to grade
        assert r["messages"][0]["role"] == "system"

    s = out.summary
    assert (s["tasks"], s["attempts"]) == (3, 3)
    assert s["pass_at_1"] == pytest.approx(4 / 9)
    assert s["pass_at_k"]["3"] == pytest.approx(2 / 3)
    assert s["pass_at_k"]["2"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert s["terminations"] == {"submitted": 6, "max_turns": 3}

    manifest = lake.manifest("evals", out.evals)
    assert manifest["info"]["summary"] == s
    assert manifest["parameters"]["split"] == "eval"
    assert manifest["parameters"]["config"]["episode"]["sampling"]["top_p"] == 1.0
    split_v = lake.resolve("tasks", manifest["inputs"]["tasks"])  # the eval split, pinned
    assert split_v.manifest["inputs"]["tasks"] == lake.resolve("tasks", "toy-swe").version
    assert split_v.manifest["parameters"] == {"split": "eval", "limit": None}

    # predictions: one official-format file per attempt, one line per task
    files = sorted(p.name for p in out.predictions.iterdir())
    assert files == ["attempt-00.jsonl", "attempt-01.jsonl", "attempt-02.jsonl"]
    assert out.predictions.parent == lake.resolve("evals", out.evals).path
    for attempt in range(3):
        lines = (out.predictions / f"attempt-{attempt:02d}.jsonl").read_text().splitlines()
        preds = [json.loads(x) for x in lines]
        assert [p["instance_id"] for p in preds] == eval_ids
        for p in preds:
            assert set(p) == {"instance_id", "model_name_or_path", "model_patch"}
            assert p["model_name_or_path"] == model.name
            row = next(
                r for r in rows if (r["instance_id"], r["attempt"]) == (p["instance_id"], attempt)
            )
            assert p["model_patch"] == (row["patch"] or "")
    # the official harness's own reader takes the file as is
    official = get_predictions_from_file(str(out.predictions / "attempt-00.jsonl"), "toy", "test")
    assert [p["instance_id"] for p in official] == eval_ids
    # the parquet reader still sees exactly the rows (the extra files do not disturb it)
    assert connect(lake.root).execute("select count(*) from evals").fetchone()[0] == 9

    # the report reads the real stage output: the model is a plain directory, so "base (<dir>)"
    stage = next(x for x in report_figures(lake) if x.key == "stage-table").table
    row = next(r for r in stage if r["attempts"] == 3)
    assert row["model"] == f"base ({model.name})" and row["tasks"] == "toy-swe (eval)"
    assert row["Pass@1 % ± SEM"] == f"{100 * 4 / 9:.1f} ± {100 * s['pass_at_1_sem']:.1f}"

    # the same call again: the existing version, nothing runs
    calls = gen.calls
    again = evaluate(lake, generator=gen, **kw)
    assert again.reused and again.evals == out.evals and again.summary == s
    assert again.predictions == out.predictions and gen.calls == calls


class Stop(Exception):
    pass


def test_a_killed_run_resumes_its_finished_attempts(setup):
    lake, tasks_v, model = setup
    tasks = load_tasks(tasks_v, root=lake.root)
    kw = dict(
        model=str(model),
        tasks="toy-swe",
        split=None,
        # one at a time: the crash leaves exactly 3 attempts saved
        **eval_config(2, max_live_sandboxes=1),
        name="resume-test",
    )

    def crash_after_3(done: int, total: int) -> None:
        assert total == 8
        if done == 3:
            raise Stop

    first = ScriptedGenerator(model, tasks, good={}, loop=set())
    with pytest.raises(Stop):
        evaluate(lake, generator=first, progress=crash_after_3, **kw)
    assert not lake.versions("evals") or all(
        v.name != "resume-test" for v in lake.versions("evals")
    )

    second = ScriptedGenerator(model, tasks, good={}, loop=set())
    seen = []
    out = evaluate(lake, generator=second, progress=lambda d, t: seen.append(d), **kw)
    assert out.resumed_attempts == 3 and not out.reused
    assert seen == [4, 5, 6, 7, 8]
    assert second.calls == 5  # one turn (submit) per attempt that had not finished
    rows = lake.read("evals", out.evals).to_pylist()
    assert len(rows) == 8 and lake.resolve("evals", "resume-test").version == out.evals
    assert out.summary["pass_at_1"] == 0.0 and out.summary["terminations"] == {"submitted": 8}


def test_tiny_random_model_through_the_hf_backend(setup):
    lake, tasks_v, model = setup
    # 8 sampled tokens a turn: fast, and a random model rarely closes a turn that short
    episode = EpisodeConfig(max_turns=3, max_turn_tokens=8)
    out = evaluate(
        lake,
        model=str(model),
        tasks="toy-swe",
        split="eval",
        limit=2,
        **eval_config(2, episode),
        generator="hf",
        seed=1,
    )
    rows = lake.read("evals", out.evals).to_pylist()
    assert len(rows) == 4 and {r["generator"] for r in rows} == {"hf"}
    for r in rows:
        assert r["termination"] in ("context_limit", "max_turns", "submitted")
        assert r["turns"] >= 1 and r["completion_tokens"] > 0
        assert r["completion_tokens"] <= 3 * 8
    assert out.summary["attempts"] == 2 and out.summary["tasks"] == 2
    assert set(out.summary["pass_at_k"]) == {"1", "2"}
    assert lake.manifest("evals", out.evals)["parameters"]["generator"] == "hf"
    assert len((out.predictions / "attempt-01.jsonl").read_text().splitlines()) == 2


def test_unknown_split_and_zero_attempts_are_refused(setup):
    lake, tasks_v, model = setup
    with pytest.raises(ValueError, match="no task in split 'test'"):
        evaluate(lake, model=str(model), tasks="toy-swe", split="test", **eval_config(1))
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        evaluate(lake, model=str(model), tasks="toy-swe", **eval_config(0))
