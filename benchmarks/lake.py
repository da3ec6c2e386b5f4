"""Lake benchmark: DuckDB over versioned Parquet against Python's json over a JSONL dump.

    .venv/bin/python benchmarks/lake.py                      # 100k rows x 4,096 tokens (~3 GB scratch)
    .venv/bin/python benchmarks/lake.py --rows 10000         # a quick run

Writes `--rows` trajectory-like rows (a 4,096-integer token list, a reward, a few scalars) into a
scratch lake as `--versions` versions, and the same rows as one JSONL file. Then times
`select version, avg(reward) ... group by version` in DuckDB (the lake's `_all` view) against the
same aggregate computed by reading the JSONL with `json.loads`, and prints both times and their
ratio. Goal: DuckDB at least 20x faster, the query itself under 1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from swerl.lake import Lake, connect

CHUNK = 5_000


def make_chunk(rng: np.random.Generator, start: int, n: int, tokens: int) -> pa.Table:
    ids = rng.integers(0, 32_000, size=(n, tokens), dtype=np.int32)
    token_ids = pa.FixedSizeListArray.from_arrays(pa.array(ids.ravel()), tokens).cast(
        pa.list_(pa.int32())
    )
    return pa.table(
        {
            "trajectory_id": [f"traj-{i}" for i in range(start, start + n)],
            "instance_id": [f"task-{i % 300}" for i in range(start, start + n)],
            "turns": rng.integers(1, 41, size=n, dtype=np.int32),
            "reward": rng.random(n),
            "token_ids": token_ids,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--tokens", type=int, default=4_096)
    ap.add_argument("--versions", type=int, default=4)
    ap.add_argument(
        "--scratch", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    args = ap.parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="swerl-bench-lake-"))
    lake = Lake(scratch / "lake")
    jsonl = scratch / "trajectories.jsonl"
    rng = np.random.default_rng(0)
    per_version = args.rows // args.versions
    try:
        t0 = time.perf_counter()
        with jsonl.open("w") as dump:
            for v in range(args.versions):
                with lake.writer("bench_trajectories", stage="benchmark", parameters={"v": v}) as w:
                    for start in range(v * per_version, (v + 1) * per_version, CHUNK):
                        n = min(CHUNK, (v + 1) * per_version - start)
                        chunk = make_chunk(rng, start, n, args.tokens)
                        w.write(chunk)
                        for row in chunk.to_pylist():
                            row["version"] = w.version
                            dump.write(json.dumps(row) + "\n")
                print(f"  wrote version {v + 1}/{args.versions} ({per_version} rows)", flush=True)
        write_s = time.perf_counter() - t0
        lake_bytes = sum(f.stat().st_size for f in (scratch / "lake").rglob("*.parquet"))

        t0 = time.perf_counter()
        con = connect(lake.root)
        connect_s = time.perf_counter() - t0
        query = "select version, avg(reward) from bench_trajectories_all group by version order by version"
        t0 = time.perf_counter()
        duck = con.sql(query).fetchall()
        duck_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        with jsonl.open() as fh:
            for line in fh:
                row = json.loads(line)
                acc = sums[row["version"]]
                acc[0] += row["reward"]
                acc[1] += 1
        py = sorted((v, s / n) for v, (s, n) in sums.items())
        json_s = time.perf_counter() - t0

        assert [v for v, _ in duck] == [v for v, _ in py]
        assert all(abs(a - b) < 1e-9 for (_, a), (_, b) in zip(duck, py, strict=True))
        print()
        print(f"rows: {args.rows:,} x {args.tokens:,} tokens in {args.versions} versions")
        print(
            f"lake: {lake_bytes / 2**30:.2f} GiB Parquet; JSONL: {jsonl.stat().st_size / 2**30:.2f} GiB"
        )
        print(f"write (both copies):             {write_s:9.2f} s")
        print(f"duckdb connect (views):          {connect_s:9.3f} s")
        print(f"duckdb avg(reward) by version:   {duck_s:9.3f} s")
        print(f"python json avg(reward) by ver.: {json_s:9.3f} s")
        print(
            f"ratio json / duckdb:             {json_s / duck_s:9.1f} x   (goal >= 20x, query < 1 s)"
        )
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
