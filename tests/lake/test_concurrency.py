"""Two processes publish versions of one dataset at once while a third reads in a loop: both
versions complete, and the reader never sees a partial version."""

from __future__ import annotations

import multiprocessing as mp
import time

import pyarrow as pa

from swerl.lake import Lake, connect

ROWS = 100_000  # large enough that writing takes a while (several row groups)


def _publish(root: str, writer_id: int, start: mp.Event) -> None:
    import swerl.lake.store as store

    store.ROW_GROUP_BYTES = (
        256 * 1024
    )  # many flushes: a partial version would be visible if exposed
    start.wait()
    lake = Lake(root)
    with lake.writer("events", stage="test", parameters={"writer": writer_id}) as w:
        for i in range(0, ROWS, 20_000):
            n = min(20_000, ROWS - i)
            w.write(pa.table({"writer": [writer_id] * n, "i": list(range(i, i + n))}))


def _read_loop(root: str, stop: mp.Event, out: mp.Queue) -> None:
    seen: dict[str, int] = {}
    bad: list[str] = []
    lake = Lake(root)
    while True:
        last_pass = stop.is_set()  # one more full pass after the writers are done
        for v in lake.versions("events"):
            rows = lake.read("events", v.version).num_rows
            if rows != v.rows:
                bad.append(f"{v.version}: read {rows} rows, manifest says {v.rows}")
            seen[v.version] = rows
        if not seen:
            continue
        con = connect(root)
        for version, n in con.sql(
            "select version, count(*) from events_all group by version"
        ).fetchall():
            if n != ROWS:
                bad.append(f"duckdb saw {n} rows in {version}")
        if last_pass:
            break
        time.sleep(0.01)
    out.put((seen, bad))


def test_concurrent_publishers_and_reader(tmp_path):
    ctx = mp.get_context("spawn")
    start, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_read_loop, args=(str(tmp_path), stop, out))
    writers = [ctx.Process(target=_publish, args=(str(tmp_path), i, start)) for i in (1, 2)]
    reader.start()
    for w in writers:
        w.start()
    start.set()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    time.sleep(0.2)
    stop.set()
    seen, bad = out.get(timeout=60)
    reader.join(30)
    assert bad == []
    versions = Lake(tmp_path).versions("events")
    assert len(versions) == 2 and {v.rows for v in versions} == {ROWS}
    assert set(seen) == {v.version for v in versions}  # the reader saw both, only whole
    con = connect(tmp_path)
    assert sorted(con.sql("select distinct writer from events_all").fetchall()) == [(1,), (2,)]
