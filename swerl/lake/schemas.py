"""Column schemas of every dataset in the lake, defined once, one line of doc per column.

A dataset registered here is validated on write: missing nullable columns are filled with nulls,
missing required columns, unknown columns and uncastable types are errors that name the column.
Datasets not registered here (a user's own tables, benchmarks) are written with the schema of the
data they are given.

The description of each column travels into the Parquet field metadata and the version's manifest,
so `swerl datasets --schema NAME` and DuckDB's `DESCRIBE` users can find out what a column means.
"""

from __future__ import annotations

import pyarrow as pa

STRINGS = pa.list_(pa.string())


def col(name: str, type_: pa.DataType, doc: str, *, required: bool = False) -> pa.Field:
    """A column: its name, Arrow type, one-line description, and whether it may be null."""
    return pa.field(name, type_, nullable=not required, metadata={"description": doc})


TASKS = pa.schema(
    [
        col(
            "instance_id",
            pa.string(),
            "unique task id, `owner__repo-N` for SWE-bench",
            required=True,
        ),
        col("repo", pa.string(), "GitHub repository `owner/name`", required=True),
        col("base_commit", pa.string(), "commit the agent starts from", required=True),
        col("problem_statement", pa.string(), "the issue text shown to the agent", required=True),
        col("patch", pa.string(), "gold patch (non-test files) as a unified git diff"),
        col("test_patch", pa.string(), "patch adding/changing the tests that check the fix"),
        col("hints_text", pa.string(), "issue comments before the fix (not shown by default)"),
        col("created_at", pa.timestamp("us", tz="UTC"), "when the pull request was created"),
        col("version", pa.string(), "repository version key used by SWE-bench's specs"),
        col("FAIL_TO_PASS", STRINGS, "tests that must go from failing to passing"),
        col("PASS_TO_PASS", STRINGS, "tests that must keep passing"),
        col("FAIL_TO_FAIL", STRINGS, "tests failing before and after the gold patch (SWE-rebench)"),
        col("PASS_TO_FAIL", STRINGS, "tests the gold patch breaks (SWE-rebench)"),
        col("environment_setup_commit", pa.string(), "commit used to build the environment"),
        col(
            "install_config",
            pa.string(),
            "SWE-rebench install config as JSON (python, install, test_cmd, log_parser)",
        ),
        col(
            "docker_image", pa.string(), "prebuilt image for the task (SWE-rebench `docker_image`)"
        ),
        col(
            "image_name",
            pa.string(),
            "prebuilt image for the task (SWE-rebench/SWE-Gym `image_name`)",
        ),
        col(
            "meta", pa.string(), "SWE-rebench metadata as JSON (llm_score, num_modified_files, ...)"
        ),
        col("requirements", pa.string(), "pinned requirements of the environment (SWE-rebench)"),
        col("environment", pa.string(), "exported environment description (SWE-rebench)"),
        col("license_name", pa.string(), "license of the repository (SWE-rebench)"),
        col(
            "repo_files",
            pa.string(),
            "self-contained tasks (toy-SWE): files at base_commit as a JSON object path -> text",
        ),
        col("extra", pa.string(), "every input field swerl does not know, as a JSON object"),
        col("source", pa.string(), "where the row came from: `file:row` (row numbers start at 1)"),
    ]
)

TASKS_REJECTED = pa.schema(
    [
        col("source", pa.string(), "where the row came from: `file:row`", required=True),
        col("instance_id", pa.string(), "the row's instance_id, if it had a usable one"),
        col("reasons", STRINGS, "every problem found in the row, one per entry", required=True),
        col("row", pa.string(), "the raw row as JSON, so nothing is lost", required=True),
    ]
)

TASK_RUNS = pa.schema(
    [
        col("instance_id", pa.string(), "the task validated", required=True),
        col(
            "patch_kind",
            pa.string(),
            "`gold` (the gold patch) or `empty` (no patch)",
            required=True,
        ),
        col("run", pa.int32(), "repetition number, 0-based", required=True),
        col(
            "outcome",
            pa.string(),
            "grading outcome: resolved, unresolved, patch_failed, timeout, ...",
        ),
        col("resolved", pa.bool_(), "whether the run resolved the task by the SWE-bench rule"),
        col("tests_status", pa.string(), "per-test status in the official report shape, as JSON"),
        col("import_error", pa.bool_(), "the test output shows ImportError/AttributeError"),
        col("duration_s", pa.float64(), "wall time of the run, seconds"),
        col("backend", pa.string(), "sandbox backend: docker or local"),
        col("detail", pa.string(), "error detail or the tail of the test log"),
    ]
)

TASK_POOL = pa.schema(
    [
        col("instance_id", pa.string(), "the task", required=True),
        col("repo", pa.string(), "its repository"),
        col("kept", pa.bool_(), "whether the task is in the pool", required=True),
        col(
            "reasons", STRINGS, "every reason the task was dropped (empty when kept)", required=True
        ),
    ]
)

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

TRAJECTORIES = pa.schema(
    [
        col(
            "trajectory_id",
            pa.string(),
            "unique id: `<stage>/<iteration>/<instance_id>/<sample>`",
            required=True,
        ),
        col("instance_id", pa.string(), "the task", required=True),
        col("repo", pa.string(), "the task's repository"),
        col("stage", pa.string(), "rft, dapo or eval", required=True),
        col("iteration", pa.int32(), "DAPO iteration (0 for rft and eval)"),
        col("group_id", pa.string(), "rollouts of one task in one iteration share a group"),
        col("sample", pa.int32(), "index of the rollout within its group"),
        col("policy_version", pa.string(), "`models` version (or model path) that generated it"),
        col("generator", pa.string(), "backend: hf, vllm, vllm-server, openai-chat, replay"),
        col(
            "token_ids",
            pa.list_(pa.int32()),
            "the whole episode as token ids: prompt, sampled turns, observation deltas",
        ),
        col("loss_mask", pa.list_(pa.int8()), "1 on sampled tokens, 0 on prompt and observations"),
        col(
            "sampler_logprobs",
            pa.list_(pa.float32()),
            "the sampler's log-prob of each token (0 where loss_mask is 0)",
        ),
        col("messages", MESSAGES, "the conversation as chat messages (decoded from the tokens)"),
        col("patch", pa.string(), "final `git diff` of the repository against base_commit"),
        col("submitted", pa.bool_(), "the agent ended the episode with `submit`"),
        col("resolved", pa.bool_(), "the patch resolves the task (SWE-bench rule)"),
        col(
            "grade_outcome",
            pa.string(),
            "resolved, unresolved, patch_failed, timeout, image_missing, not_graded, ...",
        ),
        col("tests_status", pa.string(), "per-test status in the official report shape, as JSON"),
        col("reward", pa.float64(), "final reward: resolved (0/1) + turn penalty"),
        col("turn_penalty", pa.float64(), "the turn-count part of the reward (<= 0)"),
        col("turns", pa.int32(), "assistant turns taken"),
        col(
            "termination",
            pa.string(),
            "submitted, max_turns, context_limit, generation_error, sandbox_error",
        ),
        col("format_errors", pa.int32(), "turns without exactly one command block"),
        col("tool_errors", pa.int32(), "turns whose tool call was malformed or misused"),
        col(
            "fidelity_mismatches",
            pa.int32(),
            "tokens differing from a full re-rendering (0 expected)",
        ),
        col("prompt_tokens", pa.int32(), "tokens of the first prompt"),
        col("completion_tokens", pa.int32(), "sampled tokens over all turns"),
        col("total_tokens", pa.int32(), "length of token_ids"),
        col("generation_s", pa.float64(), "seconds waiting for the generator"),
        col("tool_s", pa.float64(), "seconds in sandbox calls"),
        col("grading_s", pa.float64(), "seconds grading the patch"),
        col("total_s", pa.float64(), "wall time of the episode, grading included"),
        col("sampling", pa.string(), "effective sampling settings, as JSON"),
        col("config", pa.string(), "episode config (limits, tools), as JSON"),
        col("error", pa.string(), "what went wrong, for generation/sandbox errors"),
    ]
)

TURNS = pa.schema(
    [
        col("trajectory_id", pa.string(), "the episode", required=True),
        col("instance_id", pa.string(), "the task"),
        col("turn", pa.int32(), "0-based turn index", required=True),
        col("command", pa.string(), "the command the turn ran (null on a format error)"),
        col("observation", pa.string(), "what the environment answered (truncated for storage)"),
        col("format_error", pa.bool_(), "no or several command blocks"),
        col("tool_error", pa.bool_(), "a tool used wrongly"),
        col("timed_out", pa.bool_(), "the command hit its timeout"),
        col("completion_tokens", pa.int32(), "tokens sampled this turn"),
        col("observation_tokens", pa.int32(), "tokens the observation took"),
        col("generation_s", pa.float64(), "seconds generating"),
        col("tool_s", pa.float64(), "seconds executing"),
    ]
)

TRAIN_METRICS = pa.schema(
    [
        col("model_version", pa.string(), "the `models` version this step produced", required=True),
        col("stage", pa.string(), "train_rft or update_policy", required=True),
        col("iteration", pa.int32(), "DAPO iteration of the trajectories (null for RFT)"),
        col("step", pa.int32(), "optimizer step within the run, 0-based", required=True),
        col("epoch", pa.float64(), "epoch progress at this step (RFT; null for updates)"),
        col("loss", pa.float64(), "training loss of the step (RFT: token NLL; DAPO: -J)"),
        col("clip_frac_low", pa.float64(), "fraction of action tokens clipped at 1 - eps_low"),
        col("clip_frac_high", pa.float64(), "fraction of action tokens clipped at 1 + eps_high"),
        col("ratio_mean", pa.float64(), "mean pi_theta / pi_old over action tokens"),
        col("ratio_max", pa.float64(), "largest pi_theta / pi_old over action tokens"),
        col("entropy", pa.float64(), "mean entropy of the policy over action tokens (nats)"),
        col("grad_norm", pa.float64(), "global gradient norm before clipping"),
        col("lr", pa.float64(), "learning rate of the step"),
        col("tokens", pa.int64(), "action (loss) tokens in the step's minibatch"),
        col("kept_samples", pa.int32(), "trajectories in the step's minibatch"),
        col("dropped_samples", pa.int32(), "trajectories of the round dropped (zero advantage)"),
        col(
            "sampler_gap_abs",
            pa.float64(),
            "mean |log pi_trainer - log pi_sampler| over the round's action tokens",
        ),
        col("sampler_kl", pa.float64(), "k3 estimate of KL(sampler || trainer) over the round"),
    ]
)

EVALS = pa.schema(
    [
        col("instance_id", pa.string(), "the task", required=True),
        col("repo", pa.string(), "the task's repository"),
        col(
            "attempt",
            pa.int32(),
            "attempt number, 0-based (run r = attempt r of every task)",
            required=True,
        ),
        col(
            "model_version",
            pa.string(),
            "`models` version (or `path:<dir>`) evaluated",
            required=True,
        ),
        col("generator", pa.string(), "backend: hf, vllm, vllm-server, ..."),
        col(
            "resolved",
            pa.bool_(),
            "the final patch resolves the task (SWE-bench rule)",
            required=True,
        ),
        col(
            "grade_outcome",
            pa.string(),
            "resolved, unresolved, patch_failed, timeout, image_missing, not_graded, ...",
        ),
        col("tests_status", pa.string(), "per-test status in the official report shape, as JSON"),
        col("reward", pa.float64(), "resolved (0/1) + turn penalty, as in training"),
        col("turn_penalty", pa.float64(), "the turn-count part of the reward (<= 0)"),
        col("submitted", pa.bool_(), "the agent ended the episode with `submit`"),
        col(
            "termination",
            pa.string(),
            "submitted, max_turns, context_limit, generation_error, sandbox_error",
        ),
        col("turns", pa.int32(), "assistant turns taken"),
        col("format_errors", pa.int32(), "turns without exactly one command block"),
        col("tool_errors", pa.int32(), "turns whose tool call was malformed or misused"),
        col("prompt_tokens", pa.int32(), "tokens of the first prompt"),
        col("completion_tokens", pa.int32(), "sampled tokens over all turns"),
        col("total_tokens", pa.int32(), "prompt, turns and observations, in tokens"),
        col("patch", pa.string(), "final `git diff` against base_commit (the prediction)"),
        col("messages", MESSAGES, "the conversation as chat messages"),
        col("sampling", pa.string(), "decoding settings of the attempt, as JSON"),
        col("config", pa.string(), "episode, grading and sandbox settings, as JSON"),
        col("generation_s", pa.float64(), "seconds waiting for the generator"),
        col("tool_s", pa.float64(), "seconds in sandbox calls"),
        col("grading_s", pa.float64(), "seconds grading the patch"),
        col("total_s", pa.float64(), "wall time of the attempt, grading included"),
        col("error", pa.string(), "what went wrong, for generation/sandbox errors"),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "tasks": TASKS,
    "tasks_rejected": TASKS_REJECTED,
    "task_runs": TASK_RUNS,
    "task_pool": TASK_POOL,
    "trajectories": TRAJECTORIES,
    "turns": TURNS,
    "train_metrics": TRAIN_METRICS,
    "evals": EVALS,
}


def describe(schema: pa.Schema) -> list[dict[str, str]]:
    """The schema as `[{name, type, description}]`, the form stored in manifests."""
    out = []
    for field in schema:
        meta = field.metadata or {}
        doc = meta.get(b"description", b"").decode()
        out.append({"name": field.name, "type": str(field.type), "description": doc})
    return out
