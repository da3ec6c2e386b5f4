"""The `swerl` command: thin over the library, one sub-command per capability.

    swerl tasks import FILE... --name NAME     task files -> a `tasks` version
    swerl datasets [DATASET]                   what the lake holds
    swerl sql "SELECT ..."                     DuckDB over every dataset
    swerl demo                                 the whole pipeline on toy-SWE with a tiny model
    swerl run STAGE --param k=v [--force]      one stage's flow (re-run, pinned inputs)
    swerl rollout --tasks T --model M          a policy's episodes -> trajectories + turns
    swerl evaluate --model M --tasks T         n attempts per task -> `evals`, SWE-bench predictions
    swerl report --out report.html             the HTML report of a run (--model: its final model)
    swerl toy build                            the toy-SWE suite as a `tasks` version
    swerl images base                          build swerl-base:bookworm (no registry needed)
    swerl images build --tasks NAME            per-task sandbox images
    swerl sandbox reap                         remove orphaned sandbox containers
    swerl models tiny --out DIR                a tiny local model for tests and the demo
    swerl train rft | swerl train update       rejection fine-tuning, one DAPO update round

`--data DIR` (or `$SWERL_DATA`) picks the lake root; default `data/`.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from swerl.lake import Lake, LakeError, connect
from swerl.models.tiny import TinySpec, build_tiny_model
from swerl.swe.ingest import TaskImportError, import_tasks

PromptsDir = Annotated[
    str | None,
    typer.Option(
        help="Prompt files (system.md, instance.md, demonstration.md): a folder under "
        "configs/prompts (e.g. tiny) or an absolute path. Default: configs/prompts."
    ),
]
"""The --prompts-dir option of the commands that run episodes (rollout, evaluate)."""
RelativePaths = Annotated[
    bool,
    typer.Option(
        help="Show paths under the repository root relative to it in observations "
        "(src/app.py, not /testbed/src/app.py): fewer tokens per turn."
    ),
]
"""The --relative-paths option of the commands that run episodes (rollout, evaluate)."""

app = typer.Typer(
    help="swerl: multi-turn RL for software-engineering agents. Versioned datasets in a Parquet "
    "lake, queryable with DuckDB.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tasks_app = typer.Typer(help="Import and inspect SWE task sets.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
models_app = typer.Typer(help="Build and inspect model directories.", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console()
err = Console(stderr=True)
STATE: dict[str, Path | None] = {"root": None}
# Errors a user can fix get one clear line on stderr and exit code 1, never a traceback.
USER_ERRORS = (LakeError, TaskImportError, duckdb.Error, OSError)


def lake() -> Lake:
    return Lake(STATE["root"])


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.callback()
def main(
    data: Annotated[
        Path | None,
        typer.Option("--data", envvar="SWERL_DATA", help="Lake root directory (default: data/)."),
    ] = None,
) -> None:
    STATE["root"] = data


# ---- tasks ---------------------------------------------------------------------------------------


@tasks_app.command("import")
def tasks_import(
    paths: Annotated[list[Path], typer.Argument(help="JSONL, JSON or Parquet files, or folders.")],
    name: Annotated[
        str | None, typer.Option(help="Name of the task set (select it later by this name).")
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Publish the good rows; record bad ones in `tasks_rejected`."),
    ] = False,
    force: Annotated[bool, typer.Option(help="Write a new version even if one matches.")] = False,
) -> None:
    """Import SWE-bench / SWE-bench Verified / SWE-rebench / SWE-Gym task files."""
    try:
        result = import_tasks(
            list(paths), name=name, skip_invalid=skip_invalid, force=force, lake=lake()
        )
    except USER_ERRORS as e:
        fail(str(e))
    label = f" ({name})" if name else ""
    if result.reused:
        console.print(
            f"tasks version [bold]{result.version}[/]{label} already holds these files: "
            f"{result.rows} tasks (reused; --force writes a new version)"
        )
    else:
        console.print(
            f"imported {result.rows} tasks -> tasks version [bold]{result.version}[/]{label}"
        )
    if result.rejected:
        console.print(
            f"[yellow]{result.rejected} invalid row(s)[/] -> tasks_rejected version "
            f"[bold]{result.rejected_version}[/] "
            f'(see: swerl sql "select source, reasons from tasks_rejected")'
        )


# ---- models --------------------------------------------------------------------------------------


@models_app.command("tiny")
def models_tiny(
    out: Annotated[Path, typer.Option(help="New directory for the model.")],
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = TinySpec.vocab_size,
    hidden_size: Annotated[int, typer.Option(help="Residual width.")] = TinySpec.hidden_size,
    layers: Annotated[int, typer.Option(help="Transformer blocks.")] = TinySpec.layers,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = TinySpec.heads,
    kv_heads: Annotated[int, typer.Option(help="Key/value heads.")] = TinySpec.kv_heads,
    intermediate_size: Annotated[int, typer.Option(help="MLP width.")] = TinySpec.intermediate_size,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = TinySpec.seed,
    copy_steps: Annotated[
        int, typer.Option(help="Steps of the copying warm-up (0: random weights).")
    ] = TinySpec.copy_steps,
) -> None:
    """Build a tiny Qwen2-architecture model and a locally trained byte-level BPE tokenizer with
    a ChatML template, in seconds, with no downloads."""
    try:
        spec = TinySpec(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            layers=layers,
            heads=heads,
            kv_heads=kv_heads,
            intermediate_size=intermediate_size,
            seed=seed,
            copy_steps=copy_steps,
        )
        path = build_tiny_model(out, spec)
    except (ValueError, FileExistsError) as e:
        fail(str(e))
    console.print(f"tiny model written to [bold]{path}[/]")


# ---- datasets and SQL ----------------------------------------------------------------------------


@app.command()
def datasets(
    dataset: Annotated[str | None, typer.Argument(help="Show this dataset's versions.")] = None,
    schema: Annotated[bool, typer.Option(help="Show the columns of the latest version.")] = False,
) -> None:
    """List datasets (versions, rows, stage, created), or one dataset's versions."""
    try:
        lk = lake()
        if dataset is None:
            table = Table("dataset", "versions", "latest", "name", "rows", "stage", "created (UTC)")
            for name in lk.datasets():
                vs = lk.versions(name)
                v = vs[-1]
                table.add_row(
                    name,
                    str(len(vs)),
                    v.version,
                    v.name or "",
                    str(v.rows),
                    v.manifest.get("stage", ""),
                    _created(v.manifest),
                )
            if not table.rows:
                console.print(f"the lake at {lk.root} holds no datasets yet")
                return
            console.print(table)
            return
        if schema:
            table = Table("column", "type", "description")
            for c in lk.manifest(dataset)["schema"]:
                table.add_row(c["name"], c["type"], c["description"])
            console.print(table)
            return
        table = Table("version", "name", "rows", "stage", "created (UTC)", "inputs")
        lk.resolve(dataset)  # a clear error for a dataset without versions
        for v in lk.versions(dataset):
            inputs = ", ".join(f"{k}={val}" for k, val in v.manifest.get("inputs", {}).items())
            table.add_row(
                v.version,
                v.name or "",
                str(v.rows),
                v.manifest.get("stage", ""),
                _created(v.manifest),
                inputs,
            )
        console.print(table)
    except USER_ERRORS as e:
        fail(str(e))


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A DuckDB SQL query over the lake's views.")],
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = (
        OutputFormat.table
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows shown in table format.")] = 40,
    max_width: Annotated[int, typer.Option(help="Characters shown per cell in table format.")] = 60,
) -> None:
    """Run SQL over every dataset: `<dataset>` is its latest version, `<dataset>_all` every
    version (with a `version` column), `lake_versions` one row per published version.
    JSON output is newline-delimited (one object per row)."""
    if format is OutputFormat.parquet and output is None:
        fail("--format parquet needs --output FILE")
    if format is OutputFormat.table and output is not None:
        fail("--output needs --format csv, json or parquet")
    try:
        con = connect(lake().root)
        reader = con.sql(query)
        if reader is None:  # a statement without a result (CREATE, SET, ...)
            return
        reader = reader.to_arrow_reader(10_000)
        if format is OutputFormat.table:
            _print_table(reader, max_rows, max_width)
        else:
            n = _write_rows(reader, format, output)
            if output is not None:
                err.print(f"wrote {n} rows to {output}")
    except duckdb.CatalogException as e:
        views = [
            r[0]
            for r in con.sql("select view_name from duckdb_views() where not internal").fetchall()
        ]
        fail(
            f"{str(e).strip()}\nviews in the lake: {', '.join(views + ['lake_versions']) or 'none'}"
        )
    except USER_ERRORS as e:
        fail(str(e).strip())


def _print_table(reader: pa.RecordBatchReader, max_rows: int, max_width: int) -> None:
    table = Table(*reader.schema.names, show_lines=False)
    shown = total = 0
    for batch in reader:
        total += batch.num_rows
        for row in batch.to_pylist():
            if shown >= max_rows:
                break
            table.add_row(*(_cell(v, max_width) for v in row.values()))
            shown += 1
    console.print(table)
    more = f"; showing {shown} (--max-rows, or --format csv)" if total > shown else ""
    console.print(f"{total} row{'s' if total != 1 else ''}{more}", style="dim")


def _cell(value: object, width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, list | dict):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = text.replace("\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"


def _write_rows(reader: pa.RecordBatchReader, format: OutputFormat, output: Path | None) -> int:
    n = 0
    if format is OutputFormat.parquet:
        with pq.ParquetWriter(output, reader.schema) as w:
            for batch in reader:
                w.write_batch(batch)
                n += batch.num_rows
        return n
    sink = open(output, "wb") if output is not None else sys.stdout.buffer  # noqa: SIM115
    try:
        if format is OutputFormat.csv:
            writer = None
            for batch in reader:
                batch = _flatten_for_csv(batch)
                writer = writer or pa_csv.CSVWriter(sink, batch.schema)
                writer.write_batch(batch)
                n += batch.num_rows
            if writer is None:  # no rows: still write the header
                writer = pa_csv.CSVWriter(
                    sink, _flatten_for_csv(reader.schema.empty_table()).schema
                )
            writer.close()
        else:
            for batch in reader:
                for row in batch.to_pylist():
                    sink.write(json.dumps(row, default=str).encode() + b"\n")
                n += batch.num_rows
    finally:
        sink.flush()
        if output is not None:
            sink.close()
    return n


def _flatten_for_csv(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """CSV has no lists or structs: nested columns become JSON text."""
    for i, f in enumerate(batch.schema):
        if pa.types.is_nested(f.type):
            text = pa.array(
                [
                    None if v is None else json.dumps(v, default=str)
                    for v in batch.column(i).to_pylist()
                ],
                pa.string(),
            )
            batch = batch.set_column(i, f.name, text)
    return batch


def _created(manifest: dict) -> str:
    return str(manifest.get("created_at", ""))[:19].replace("T", " ")


# ---- demo and stages ----------------------------------------------------------------------------

DEMO_QUERIES = (
    (
        "pass@1 per evaluated policy",
        "select inputs->>'models' model, avg(resolved::int) pass1, count(*) attempts "
        "from evals_all e join lake_versions v on v.dataset = 'evals' and v.version = e.version "
        "group by 1 order by min(v.created_at)",
    ),
    (
        "how episodes ended, per stage and iteration",
        "select stage, iteration, termination, count(*) n, avg(reward) reward "
        "from trajectories_all group by all order by all",
    ),
    (
        "which commands the policy runs, and how often it misuses them",
        "select split_part(command, ' ', 1) tool, count(*) uses, "
        "round(avg(tool_error::int), 3) misuse_rate from turns_all "
        "where command is not null group by tool order by uses desc limit 10",
    ),
)


def _prefect_env() -> None:
    """Ephemeral-mode Prefect on a busy laptop: a patient server start, no telemetry."""
    import os

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@app.command()
def demo(
    config: Annotated[str, typer.Option(help="Config of every stage (configs/NAME.yaml).")] = (
        "dev-tiny"
    ),
    force: Annotated[bool, typer.Option(help="Redo every stage (new versions).")] = False,
) -> None:
    """The whole pipeline on the toy-SWE suite with a tiny model, in Prefect's ephemeral mode:
    import -> images -> filter -> RFT collection -> RFT -> DAPO -> evaluation. A second run reuses
    every finished stage."""
    _prefect_env()
    lk = lake()
    console.rule("[bold]swerl demo")
    console.print(f"config: {config}   lake: {lk.root.resolve()}   (progress: the flow logs)")
    from flows.pipeline import pipeline

    try:
        result = pipeline(config=config, force=force, data=str(lk.root))
    except Exception as e:  # the flow logged the traceback; one line here
        fail(f"the pipeline failed: {type(e).__name__}: {e}")
    console.rule("[bold]results")
    table = Table("stage", "model version", "Pass@1", "± SEM", "evals version")
    for stage, r in result["results"].items():
        table.add_row(stage, r["model"], f"{r['pass@1']:.3f}", f"{r['sem']:.3f}", r["evals"])
    console.print(table)
    console.print(f"Everything is in {lk.root.resolve()} (versioned Parquet + model directories).")
    console.print(f"The run's report (open it in a browser): {result['report']}")
    console.print("Try (each reads the whole lake with DuckDB):")
    for what, query in DEMO_QUERIES:
        console.print(f"  # {what}")
        console.print(f'  swerl sql "{query}"', highlight=False, soft_wrap=True)


@app.command("run")
def run_stage(
    stage: Annotated[str, typer.Argument(help="import_tasks, filter_tasks, collect_rft, ...")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (JSON value), repeatable.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="Config (configs/NAME.yaml).")] = None,
    force: Annotated[bool, typer.Option(help="Make a new version even if one matches.")] = False,
) -> None:
    """Run one stage's flow here (ephemeral Prefect, or the server at PREFECT_API_URL): the same
    inputs, parameters and code reuse the existing version; --force makes a new one."""
    import importlib

    from swerl.config import STAGES

    if stage.replace("-", "_") not in STAGES:
        fail(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    stage = stage.replace("-", "_")
    params = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--param {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    _prefect_env()
    flow_fn = getattr(importlib.import_module(f"flows.{stage}"), stage)
    try:
        result = flow_fn(**params, config=config, force=force, data=str(lake().root))
    except TypeError as e:
        fail(f"{stage}: {e}")
    except Exception as e:
        fail(f"{stage} failed: {type(e).__name__}: {e}")
    console.print_json(json.dumps(result, default=str))


# ---- toy suite, images, sandboxes ----------------------------------------------------------------

toy_app = typer.Typer(help="The bundled toy-SWE task suite.", no_args_is_help=True)
app.add_typer(toy_app, name="toy")
images_app = typer.Typer(help="Build Docker images for sandboxes.", no_args_is_help=True)
app.add_typer(images_app, name="images")
sandbox_app = typer.Typer(help="Manage sandbox containers.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@toy_app.command("build")
def toy_build(
    seed: Annotated[int, typer.Option(help="Seed of the generator (same seed, same rows).")] = 0,
    train: Annotated[int, typer.Option(min=0, help="Number of train tasks.")] = 48,
    eval_: Annotated[int, typer.Option("--eval", min=0, help="Number of eval tasks.")] = 16,
    name: Annotated[str, typer.Option(help="Name of the `tasks` version.")] = "toy-swe",
    difficulty: Annotated[
        list[int] | None,
        typer.Option(
            min=1,
            max=3,
            help="Keep only tasks of this difficulty (1: the issue names the file; 2: only the "
            "function; 3: the bug is in a helper in another module). Repeat for several; "
            "default all.",
        ),
    ] = None,
) -> None:
    """Generate the toy-SWE suite, run its tests, publish it as a `tasks` version."""
    from swerl.swe.toy import ToyGenerationError, publish_toy_suite

    try:
        version = publish_toy_suite(
            lake(), seed=seed, n_train=train, n_eval=eval_, name=name, difficulties=difficulty
        )
    except (*USER_ERRORS, ToyGenerationError) as e:
        fail(str(e))
    levels = f" of difficulty {', '.join(map(str, sorted(set(difficulty))))}" if difficulty else ""
    console.print(f"tasks version {version} ({name}): {train} train + {eval_} eval tasks{levels}")


@images_app.command("build")
def images_build(
    tasks: Annotated[
        str, typer.Option(help="Tasks version: an id, a name such as toy-swe, or latest.")
    ],
    base_image: Annotated[
        str | None,
        typer.Option(help="Image the task images build FROM (default: python:3.11-slim)."),
    ] = None,
) -> None:
    """One image per self-contained task (repository at /testbed), cached by content."""
    import docker.errors

    from swerl.sandbox import SandboxError
    from swerl.sandbox.images import DEFAULT_BASE_IMAGE, build_images
    from swerl.swe.task import load_tasks

    base = base_image or DEFAULT_BASE_IMAGE
    try:
        built = build_images(load_tasks(tasks, root=STATE["root"]), base)
    except (*USER_ERRORS, SandboxError, ValueError, KeyError, docker.errors.DockerException) as e:
        fail(str(e))
    reused = sum(image.cached for image in built)
    console.print(
        f"{len(built)} task images FROM {base}: {len(built) - reused} built, {reused} reused"
    )


@images_app.command("base")
def images_base(
    name: Annotated[
        str | None, typer.Option(help="Tag of the new image (default: swerl-base:bookworm).")
    ] = None,
) -> None:
    """Build a base image from Debian packages (debootstrap + docker import; root, ~1 min)."""
    import docker.errors

    from swerl.sandbox import SandboxError
    from swerl.sandbox.images import LOCAL_BASE_IMAGE, build_base_image

    tag = name or LOCAL_BASE_IMAGE
    try:
        image_id = build_base_image(tag)
    except (SandboxError, docker.errors.DockerException) as e:
        fail(str(e))
    console.print(f"built {tag} ({image_id[:19]})")


@sandbox_app.command("reap")
def sandbox_reap(
    older_than: Annotated[
        float | None,
        typer.Option(help="Also remove sandboxes older than this many seconds, whoever owns them."),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Remove every swerl sandbox container.")
    ] = False,
) -> None:
    """Remove sandbox containers whose owner process is gone (label swerl=sandbox)."""
    import docker.errors

    from swerl.sandbox.docker import reap

    try:
        removed = reap(older_than_s=older_than, everything=everything)
    except docker.errors.DockerException as e:
        fail(f"no Docker engine reachable: {e}")
    console.print(
        f"removed {len(removed)} sandbox container(s)"
        + (f": {', '.join(removed)}" if removed else "")
    )


# ---- training ------------------------------------------------------------------------------------

train_app = typer.Typer(
    help="Train models: rejection fine-tuning and DAPO update rounds.", no_args_is_help=True
)
app.add_typer(train_app, name="train")


@train_app.command("rft")
def train_rft_command(
    model: Annotated[str, typer.Option(help="Base model: a `models` version or a HF directory.")],
    trajectories: Annotated[
        list[str], typer.Option(help="`trajectories` version(s) (id or name); repeat for several.")
    ],
    turns: Annotated[
        str | None, typer.Option(help="`turns` version with per-turn format errors.")
    ] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the data.")] = 1.0,
    lr: Annotated[float, typer.Option(help="Peak learning rate (cosine to 0).")] = 5e-6,
    warmup_steps: Annotated[int, typer.Option(help="Linear warmup steps.")] = 10,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.1,
    batch_size: Annotated[int, typer.Option(help="Trajectories per optimizer step.")] = 64,
    micro_batch_size: Annotated[int, typer.Option(help="Trajectories per forward/backward.")] = 1,
    max_length: Annotated[int, typer.Option(help="Longer trajectories are dropped.")] = 65536,
    max_per_task: Annotated[int | None, typer.Option(help="Cap per task (default: all).")] = None,
    min_reward: Annotated[
        float | None,
        typer.Option(help="Keep trajectories with at least this reward (1.0: no turn penalty)."),
    ] = None,
    bf16: Annotated[bool, typer.Option(help="bfloat16 mixed precision (GPU).")] = False,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Recompute activations.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the data order.")] = 0,
    name: Annotated[str | None, typer.Option(help="Name of the new models version.")] = None,
) -> None:
    """Rejection fine-tuning: resolved trajectories -> a new `models` version."""
    from swerl.train.checkpoint import CheckpointError
    from swerl.train.rft import RFTConfig, RFTDataError, train_rft

    try:
        config = RFTConfig(
            epochs=epochs,
            lr=lr,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            batch_size=batch_size,
            micro_batch_size=micro_batch_size,
            max_length=max_length,
            max_per_task=max_per_task,
            min_reward=min_reward,
            bf16=bf16,
            gradient_checkpointing=gradient_checkpointing,
            seed=seed,
        )
        version = train_rft(lake(), model, trajectories, config, turns_version=turns, name=name)
    except (ValueError, CheckpointError, RFTDataError, *USER_ERRORS) as e:
        fail(str(e))
    console.print(f"models version {version.version} at {version.path}")


@train_app.command("update")
def train_update_command(
    policy: Annotated[str, typer.Option(help="Policy: a `models` version or a HF directory.")],
    trajectories: Annotated[
        list[str],
        typer.Option(help="`trajectories` version(s) (id or name); repeat for several batches."),
    ],
    iteration: Annotated[int, typer.Option(help="The DAPO iteration to train on.")],
    eps_low: Annotated[float, typer.Option(help="Lower clip: 1 - eps_low.")] = 0.2,
    eps_high: Annotated[
        float, typer.Option(help="Upper clip: 1 + eps_high (paper 0.3/0.26).")
    ] = 0.28,
    batch_size: Annotated[int, typer.Option(help="Trajectories per optimizer step.")] = 128,
    micro_batch_size: Annotated[int, typer.Option(help="Trajectories per forward/backward.")] = 1,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-6,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.1,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clip.")] = 1.0,
    scale_by_std: Annotated[
        bool, typer.Option(help="Advantages (R - mean) / std (the paper); else R - mean.")
    ] = True,
    drop_unsolved: Annotated[
        bool,
        typer.Option(
            help="Also drop groups with no resolved sample (not the paper's; the learning "
            "benchmark's default)."
        ),
    ] = False,
    tis_cap: Annotated[
        float | None, typer.Option(help="Truncated importance sampling cap (off).")
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="Tokens per LM-head chunk.")] = 1024,
    temperature: Annotated[float, typer.Option(help="The sampler's temperature.")] = 1.0,
    bf16: Annotated[
        bool, typer.Option(help="bfloat16 mixed precision (float32 weights and AdamW state).")
    ] = False,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Recompute activations.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the minibatch shuffle.")] = 0,
    name: Annotated[str | None, typer.Option(help="Name of the new models version.")] = None,
) -> None:
    """One DAPO update round: iteration k's trajectories + policy k -> policy k+1."""
    from swerl.train.checkpoint import CheckpointError
    from swerl.train.update import UpdateConfig, UpdateError, update_policy

    try:
        config = UpdateConfig(
            eps_low=eps_low,
            eps_high=eps_high,
            batch_size=batch_size,
            micro_batch_size=micro_batch_size,
            lr=lr,
            weight_decay=weight_decay,
            max_grad_norm=max_grad_norm,
            scale_by_std=scale_by_std,
            drop_unsolved=drop_unsolved,
            tis_cap=tis_cap,
            chunk_size=chunk_size,
            temperature=temperature,
            bf16=bf16,
            gradient_checkpointing=gradient_checkpointing,
            seed=seed,
        )
        version = update_policy(lake(), policy, trajectories, iteration, config, name=name)
    except (ValueError, CheckpointError, UpdateError, *USER_ERRORS) as e:
        fail(str(e))
    console.print(f"models version {version.version} at {version.path}")


# ---- rollout -------------------------------------------------------------------------------------


@app.command("rollout")
def rollout_command(
    tasks: Annotated[str, typer.Option(help="`tasks` version (id or name), e.g. toy-swe.")],
    model: Annotated[str, typer.Option(help="Policy: a `models` version or a HF directory.")],
    samples: Annotated[int, typer.Option(help="Episodes per task (G, one group).")] = 4,
    pool: Annotated[
        str | None, typer.Option(help="`task_pool` version: only its kept tasks.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N tasks.")] = None,
    stage: Annotated[str, typer.Option(help="rft, dapo or eval (recorded on every row).")] = "dapo",
    iteration: Annotated[int, typer.Option(help="DAPO iteration (recorded).")] = 0,
    backend: Annotated[str, typer.Option(help="Sandboxes: auto, docker or local.")] = "auto",
    generator: Annotated[
        str, typer.Option(help="hf, vllm, vllm-server, or replay (plays --replay's episodes).")
    ] = "hf",
    replay: Annotated[
        list[str] | None,
        typer.Option(
            help="replay: a `trajectories` version to replay (repeat for several); sample s of "
            "a task replays its recording s mod n, tokenized by --model's tokenizer."
        ),
    ] = None,
    server_url: Annotated[
        str | None, typer.Option(help="vllm-server: the server's base URL.")
    ] = None,
    device: Annotated[str, typer.Option(help="hf: cpu or cuda.")] = "cpu",
    max_batch: Annotated[int, typer.Option(help="Most turns generated in one batch.")] = 16,
    max_live_sandboxes: Annotated[int, typer.Option(help="Episodes in flight at once.")] = 8,
    max_turns: Annotated[int, typer.Option(help="Turn limit (T_max).")] = 40,
    max_context_tokens: Annotated[int, typer.Option(help="Context limit in tokens.")] = 65536,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-new-tokens",
            "--max-turn-tokens",
            help="Cap on one reply's tokens (default: the context left).",
        ),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(
            help="Sampling temperature. Keep 1 for rft/dapo: training assumes samples from the "
            "policy itself (PAPER.md lesson 2; not enforced)."
        ),
    ] = 1.0,
    top_p: Annotated[
        float,
        typer.Option(help="Nucleus sampling mass (1.0 is off). Keep 1 for rft/dapo, as above."),
    ] = 1.0,
    command_timeout: Annotated[float, typer.Option(help="Seconds per agent command.")] = 60.0,
    relative_paths: RelativePaths = False,
    grading_timeout: Annotated[
        float, typer.Option(help="Seconds the test run of grading may take.")
    ] = 1800.0,
    turn_penalty_threshold: Annotated[int, typer.Option(help="L_thr of the turn penalty.")] = 10,
    grade_unsubmitted: Annotated[
        bool, typer.Option(help="Grade episodes that hit a limit on their diff (else 0).")
    ] = True,
    demonstration: Annotated[
        bool, typer.Option(help="Put the one-shot demonstration in the system prompt (RFT).")
    ] = False,
    prompts_dir: PromptsDir = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Run again even if this exact run exists.")] = False,
) -> None:
    """Roll out a policy on tasks: `samples` episodes per task -> `trajectories` and `turns`.

    Finished episodes are kept while the stage runs: after a crash or Ctrl-C, the same command
    resumes where it stopped. An identical finished run is reused unless --force."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from swerl.agent.rollout import rollout
    from swerl.config import rollout_config
    from swerl.sandbox import SandboxError, resolve_backend
    from swerl.train.checkpoint import CheckpointError

    try:
        settings = dict(
            samples=samples,
            backend=resolve_backend(backend),
            max_live_sandboxes=max_live_sandboxes,
            grade_unsubmitted=grade_unsubmitted,
            turn_penalty_threshold=turn_penalty_threshold,
            max_turns=max_turns,
            max_context_tokens=max_context_tokens,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            command_timeout=command_timeout,
            relative_paths=relative_paths,
            grading_timeout=grading_timeout,
            prompts_dir=prompts_dir,
        )
        config = rollout_config(
            settings, stage=stage, iteration=iteration, demonstration=demonstration
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as bar:
            job = bar.add_task("episodes", total=None)
            out = rollout(
                lake(),
                model=model,
                tasks=tasks,
                pool=pool,
                config=config,
                generator=generator,
                replay=replay,
                server_url=server_url,
                device=device,
                max_batch=max_batch,
                seed=seed,
                limit=limit,
                force=force,
                progress=lambda done, total: bar.update(job, completed=done, total=total),
            )
    except (ValueError, CheckpointError, SandboxError, *USER_ERRORS) as e:
        fail(str(e))
    if out.reused:
        console.print("an identical run exists: reused (--force runs again)")
    elif out.resumed_episodes:
        console.print(f"resumed: {out.resumed_episodes} episodes were already done")
    console.print(f"trajectories version {out.trajectories}, turns version {out.turns}")


# ---- evaluation and reports ----------------------------------------------------------------------


@app.command("evaluate")
def evaluate_command(
    model: Annotated[
        str,
        typer.Option(
            help="Model: a `models` version (id or name) or a HF directory; with --generator "
            "openai-chat, the endpoint's model name."
        ),
    ],
    tasks: Annotated[str, typer.Option(help="`tasks` version (id or name).")] = "latest",
    split: Annotated[
        str | None, typer.Option(help="Only this split (toy-SWE: train or eval; default: all).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N tasks.")] = None,
    attempts: Annotated[
        int, typer.Option(help="Attempts per task (Pass@1 over runs, Pass@k).")
    ] = 10,
    backend: Annotated[str, typer.Option(help="Sandbox backend: auto, docker or local.")] = "auto",
    generator: Annotated[
        str,
        typer.Option(
            help="Generator: hf, vllm, vllm-server, or openai-chat (an API model: any "
            "chat-completions endpoint; the API key is read from OPENAI_API_KEY)."
        ),
    ] = "hf",
    server_url: Annotated[
        str | None,
        typer.Option(help="Base URL of a vLLM server or of the chat-completions endpoint."),
    ] = None,
    device: Annotated[str, typer.Option(help="Device of the hf generator.")] = "cpu",
    max_turns: Annotated[int, typer.Option(help="Turn limit of an episode.")] = 40,
    max_context_tokens: Annotated[int, typer.Option(help="Context limit of an episode.")] = 65536,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Cap on tokens sampled per turn (default: the context left).")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (recorded).")] = 1.0,
    top_p: Annotated[
        float, typer.Option(help="Nucleus sampling mass (1.0 is off; recorded).")
    ] = 1.0,
    max_live_sandboxes: Annotated[int, typer.Option(help="Attempts in flight at once.")] = 8,
    command_timeout: Annotated[float, typer.Option(help="Seconds per agent command.")] = 60.0,
    relative_paths: RelativePaths = False,
    grading_timeout: Annotated[
        float, typer.Option(help="Seconds the test run of grading may take.")
    ] = 1800.0,
    grade_unsubmitted: Annotated[
        bool, typer.Option(help="Grade attempts that hit a limit on their diff (else 0).")
    ] = True,
    turn_penalty_threshold: Annotated[int, typer.Option(help="L_thr of the reward.")] = 10,
    prompts_dir: PromptsDir = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    name: Annotated[str | None, typer.Option(help="Name of the new evals version.")] = None,
    force: Annotated[bool, typer.Option(help="A new version even if this one exists.")] = False,
) -> None:
    """n attempts per task -> an `evals` version, its summary, SWE-bench predictions files."""
    from swerl.config import evaluate_config
    from swerl.evaluation.evaluate import evaluate
    from swerl.sandbox import resolve_backend
    from swerl.train.checkpoint import CheckpointError

    try:
        settings = dict(
            max_turns=max_turns,
            max_context_tokens=max_context_tokens,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            backend=resolve_backend(backend),
            max_live_sandboxes=max_live_sandboxes,
            grade_unsubmitted=grade_unsubmitted,
            turn_penalty_threshold=turn_penalty_threshold,
            command_timeout=command_timeout,
            relative_paths=relative_paths,
            grading_timeout=grading_timeout,
            prompts_dir=prompts_dir,
        )
        episode_args = evaluate_config(settings)
        with console.status("evaluating") as status:
            out = evaluate(
                lake(),
                model=model,
                tasks=tasks,
                split=split,
                limit=limit,
                attempts=attempts,
                **episode_args,
                generator=generator,
                server_url=server_url,
                device=device,
                seed=seed,
                name=name,
                force=force,
                progress=lambda done, total: status.update(f"evaluating: {done}/{total} attempts"),
            )
    except (ValueError, CheckpointError, *USER_ERRORS) as e:
        fail(str(e))
    s = out.summary
    n = s["attempts"]
    reused = " (reused: same inputs, parameters and code)" if out.reused else ""
    console.print(f"evals version {out.evals}{reused}")
    console.print(
        f"Pass@1 {100 * s['pass_at_1']:.1f}% ± {100 * s['pass_at_1_sem']:.1f} (SEM over {n} runs), "
        f"Pass@{n} {100 * s['pass_at_k'][str(n)]:.1f}% on {s['tasks']} tasks; "
        f"mean turns {s['mean_turns']:.1f}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(s["terminations"].items()))
    )
    console.print(f"predictions (SWE-bench format, one file per attempt): {out.predictions}")


@app.command("report")
def report_command(
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
    model: Annotated[
        str | None,
        typer.Option(
            help="The run's final model (version, name or directory); default: the whole lake."
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Title of the page.")] = None,
) -> None:
    """A self-contained HTML report of a run: stage table, Pass@k, rollouts and training curves."""
    from swerl.report import build_report

    try:
        path = build_report(lake(), out, model=model, title=title)
    except USER_ERRORS as e:
        fail(str(e))
    console.print(f"report written to {path}")


if __name__ == "__main__":
    app()
