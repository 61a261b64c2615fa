#!/usr/bin/env python3
r"""Benchmark of the Kimai → Atlas DB sync (issue 7), run through ``scripts/bench``.

One command builds a Kimai of N timesheets (the tests' generator) in a throw-away MariaDB
database and measures, in interleaved rounds (the order rotates every round):

  (a)  the reference raw pipe ``mariadb --batch --quick -e "SELECT <timesheet columns>" |
       psql -c "\copy … FROM STDIN"`` into a fresh, pre-created table;
  (a7) the same pipe for all seven replicated tables (what (b) moves; informational);
  (b)  ``python -m pipelines.run sync`` into an empty Atlas DB (ratio to (a) per round);
  (c)  a no-change scheduled run (all seven tables, delete detection included);
  (d)  a run after 10k updates (modified_at bumped) + 1k inserts + 1k deletes;
  (e)  ``reconcile`` with no differences and with 1k silent differences;
  (f)  ``transform`` (dbt build) in view mode, and the incremental facts refresh.

For every run: wall time, CPU time of the process tree (user+sys, from wait4), peak RSS of
the largest single process, rows/s, and what Kimai did for it: rows examined (MariaDB
TABLE_STATISTICS of the benchmark's own database), rows and bytes sent, MariaDB CPU (per
user, USER_STATISTICS of a login only the benchmark uses). Then the Kimai-impact study:
every statement a run sends to Kimai is captured, replayed and explained, without and with
an optional index on ``kimai2_timesheet(modified_at)``.

Every database is created with a unique name and dropped at the end (``--keep`` keeps them).
Kimai is restored to its generated state after every round, so every round measures the
same data. Two runtime-only server settings are raised while the benchmark runs and
restored by the last benchmark instance to finish: ``userstat`` (per-user and per-table
counters) and ``innodb_buffer_pool_size`` (so the table is cached, as in the baseline).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIB = 1024 * 1024
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REPLICA = "kimai_replica"
TS = "kimai2_timesheet"
TAGS = "kimai2_timesheet_tags"
CONTRACT_PREFIXES = ("KIMAI_", "ATLAS_", "DBT_")
USER_PREFIX = "kb_"
PRODUCT = [sys.executable, "-m", "pipelines.run"]

# base sizes of the changes (issue 7); scaled down below 1M timesheets (smoke runs)
BASE_CHANGES = {"updates": 10_000, "inserts": 1_000, "deletes": 1_000, "silent": 1_000}
FACTS_CHANGES = 10_000

TARGETS = {
    "b": "≤ 1.0× the raw pipe (a), same round",
    "rss": "≤ 300 MiB, every product run",
    "c": "≤ 3 s",
    "d": "≤ 5 s",
    "e0": "≤ 10 s and ≤ 1 % of the table's bytes read from Kimai",
    "fi": "≤ 5 s",
}


def log(msg: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {msg}", file=sys.stderr, flush=True)


def rotate(items: Sequence[str], n: int) -> list[str]:
    k = n % len(items)
    return list(items[k:]) + list(items[:k])


def chunked(values: Sequence[int], size: int = 5000) -> Iterator[Sequence[int]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def id_list(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


# -- /proc readings --------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def server_pids() -> tuple[list[int], list[int]]:
    """PIDs of mariadbd and of the PostgreSQL postmasters on this host."""
    maria, postmasters = [], []
    for pid in _all_pids():
        comm = _comm(pid)
        if comm in ("mariadbd", "mysqld"):
            maria.append(pid)
        elif comm == "postgres":
            fields = _stat_fields(pid)
            if fields and _comm(int(fields[1])) != "postgres":
                postmasters.append(pid)
    return maria, postmasters


def process_cpu(pid: int, children: bool = False) -> float:
    f = _stat_fields(pid)
    if not f:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if children else 0)
    return ticks / clock_ticks()


def tree_cpu(root: int) -> float:
    """CPU seconds of a server: the root (with its reaped children) plus its live children."""
    total = process_cpu(root, children=True)
    for pid in _all_pids():
        f = _stat_fields(pid)
        if f and int(f[1]) == root:
            total += process_cpu(pid)
    return total


def host_busy() -> float:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / clock_ticks()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Samples the RSS of a process tree to tell *when* the peak happened (wait4 gives how much)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.done = threading.Event()
        self.t0 = time.perf_counter()
        self.peak_kib = 0
        self.peak_at = 0.0

    def run(self) -> None:
        while not self.done.is_set():
            todo = [self.pid]
            while todo:
                pid = todo.pop()
                kib = _rss_kib(pid)
                if kib > self.peak_kib:
                    self.peak_kib, self.peak_at = kib, time.perf_counter() - self.t0
                todo.extend(_children(pid))
            self.done.wait(self.interval)


# -- databases -------------------------------------------------------------------------------------


def maria_connect(database: str | None = None, **kwargs: Any) -> Any:
    import pymysql

    return pymysql.connect(
        **MARIADB, database=database, charset="utf8mb4", autocommit=True, **kwargs
    )


class Maria:
    """Root connection to MariaDB that reconnects, holding the benchmark's liveness lock."""

    def __init__(self, lock_name: str) -> None:
        self.lock_name = lock_name
        self.conn: Any = None

    def _connect(self) -> None:
        self.conn = maria_connect()
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SELECT GET_LOCK(%s, 0)", (self.lock_name,))

    def q(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        import pymysql

        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self._connect()
                with self.conn.cursor() as cur:
                    cur.execute(sql, args)
                    return list(cur.fetchall()) if cur.description else []
            except pymysql.err.OperationalError as exc:
                if attempt == 2 or exc.args[0] not in (2003, 2006, 2013):
                    raise
                log(f"MariaDB connection lost ({exc.args[0]}); reconnecting")
                self.conn = None
                time.sleep(2)
        return []

    def one(self, sql: str, args: Any = None) -> Any:
        rows = self.q(sql, args)
        return rows[0][0] if rows else None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


def pg_query(database: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    import psycopg2

    conn = psycopg2.connect(**POSTGRES, dbname=database)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def pg_create(name: str) -> None:
    pg_query("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_query("postgres", f'CREATE DATABASE "{name}"')


def pg_drop(name: str) -> None:
    with contextlib.suppress(Exception):
        pg_query("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- measurement -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    user: dict[str, int]
    table_rows_read: int
    mariadbd_cpu: float
    pg_cpu: float
    host: float
    maria_uptime: int
    pg_started: str


@dataclass
class Sample:
    scenario: str
    round: str
    position: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    rss_mib: float = 0.0
    rss_peak_at: float = 0.0
    rc: int = 0
    rows: int = 0
    kimai_rows_examined: int = 0
    kimai_rows_read: int = 0
    kimai_rows_sent: int = 0
    kimai_bytes_sent: int = 0
    kimai_bytes_received: int = 0
    kimai_cpu: float = 0.0
    kimai_selects: int = 0
    mariadbd_cpu: float = 0.0
    pg_cpu: float = 0.0
    others_cpu: float = 0.0
    product_bytes: int = 0
    product_ts_bytes: int = 0
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: dict[str, Any] = field(default_factory=dict)
    dbt: dict[str, Any] = field(default_factory=dict)
    check: str = ""
    notes: list[str] = field(default_factory=list)
    log: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.id = uuid.uuid4().hex[:8]
        self.n = args.timesheets
        self.out = Path(args.out).resolve()
        self.out_dir = self.out.parent
        self.work = self.out_dir / f"work-{self.id}"
        self.logs = self.out_dir / f"logs-{self.id}"
        self.kimai_db = args.kimai_database or f"kimai_bench_{self.id}"
        self.own_kimai = args.kimai_database is None
        self.undo_db = f"kimai_bench_{self.id}_undo"
        self.raw_db = f"atlas_bench_{self.id}_raw"
        self.pg_dbs: list[str] = []
        self.maria = Maria(f"kb_{self.id}")
        self.user = ""
        self.password = uuid.uuid4().hex
        self.shared: dict[str, Any] = {}
        self.samples: list[Sample] = []
        self.impact: dict[str, Any] = {}
        self.meta: dict[str, Any] = {"notes": []}
        scale = 1.0 if self.n >= 1_000_000 else self.n / 1_000_000
        self.changes = {k: max(10, int(v * scale)) for k, v in BASE_CHANGES.items()}
        self.facts_changes = max(10, int(FACTS_CHANGES * scale))
        self.sets: dict[str, list[int]] = {}
        self.max_id = 0
        self.pristine: tuple[Any, ...] = ()
        self.maria_pid, self.pg_pids = server_pids()
        self.dbt_dirs: set[Path] = set()

    # -- shared runtime settings (userstat, buffer pool) -------------------------------------------

    def _bench_users(self) -> list[str]:
        rows = self.maria.q(
            "SELECT DISTINCT user FROM mysql.user WHERE user LIKE %s", (USER_PREFIX + "%",)
        )
        return [r[0] for r in rows]

    def _live(self, user: str) -> bool:
        m = re.match(r"kb_([0-9a-f]{8})_", user)
        if not m:
            return False
        return self.maria.one("SELECT IS_USED_LOCK(%s)", (f"kb_{m.group(1)}",)) is not None

    def setup_server(self) -> None:
        self.maria.q("SELECT 1")  # connects and takes the liveness lock
        others = []
        for u in self._bench_users():
            if self._live(u):
                others.append(u)
            else:  # left behind by a benchmark that was killed
                self.maria.q(f"DROP USER IF EXISTS '{u}'@'%'")
        cur_us = int(self.maria.one("SELECT @@GLOBAL.userstat"))
        cur_bp = int(self.maria.one("SELECT @@GLOBAL.innodb_buffer_pool_size"))
        flags = None
        for u in others:
            m = re.match(r"kb_[0-9a-f]{8}_u(\d)_p(\d+)$", u)
            if m:
                flags = (int(m.group(1)), int(m.group(2)) * MIB)
                break
        orig_us, orig_bp = flags or (cur_us, cur_bp)
        self.shared = {
            "userstat_before": orig_us,
            "buffer_pool_before": orig_bp,
            "other_benchmarks": len(others),
        }
        self.user = f"{USER_PREFIX}{self.id}_u{orig_us}_p{orig_bp // MIB}"
        self.maria.q(f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{self.password}'")
        if cur_us == 0:
            self.maria.q("SET GLOBAL userstat = 1")
            log("SET GLOBAL userstat = 1 (runtime only; restored at the end)")
        target = self.args.buffer_pool_mib * MIB
        if target and cur_bp < target:
            self.maria.q(f"SET GLOBAL innodb_buffer_pool_size = {target}")
            log(f"SET GLOBAL innodb_buffer_pool_size = {target // MIB} MiB (runtime; restored)")
            for _ in range(120):
                rows = self.maria.q("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_resize_status'")
                status = str(rows[0][1]) if rows else ""
                if not status or "ompleted" in status:
                    break
                time.sleep(0.5)
        self.shared["buffer_pool_during"] = int(
            self.maria.one("SELECT @@GLOBAL.innodb_buffer_pool_size")
        )
        self.shared["buffer_pool_target"] = target

    def restore_server(self) -> None:
        with contextlib.suppress(Exception):
            if self.user:
                self.maria.q(f"DROP USER IF EXISTS '{self.user}'@'%'")
        try:
            others = [u for u in self._bench_users() if self._live(u)]
        except Exception:
            return
        if others:
            log(f"{len(others)} other benchmark(s) running: they restore the server settings")
            return
        if not self.shared:
            return
        if self.shared["userstat_before"] == 0 and int(self.maria.one("SELECT @@GLOBAL.userstat")):
            self.maria.q("SET GLOBAL userstat = 0")
            log("restored userstat = 0")
        target = self.shared.get("buffer_pool_target") or 0
        before = self.shared["buffer_pool_before"]
        now = int(self.maria.one("SELECT @@GLOBAL.innodb_buffer_pool_size"))
        if target and now == target and before != target:
            self.maria.q(f"SET GLOBAL innodb_buffer_pool_size = {before}")
            log(f"restored innodb_buffer_pool_size = {before // MIB} MiB")

    # -- snapshots ---------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        cols = (
            "BYTES_SENT, BYTES_RECEIVED, ROWS_READ, ROWS_SENT, CPU_TIME, SELECT_COMMANDS,"
            " TOTAL_CONNECTIONS"
        )
        rows = self.maria.q(
            f"SELECT {cols} FROM information_schema.USER_STATISTICS WHERE USER = %s",
            (self.user,),
        )
        names = [c.strip().lower() for c in cols.split(",")]
        user = dict(zip(names, rows[0], strict=True)) if rows else dict.fromkeys(names, 0)
        table_rows = self.maria.one(
            "SELECT COALESCE(SUM(ROWS_READ), 0) FROM information_schema.TABLE_STATISTICS"
            " WHERE TABLE_SCHEMA = %s",
            (self.kimai_db,),
        )
        uptime = self.maria.q("SHOW GLOBAL STATUS LIKE 'Uptime'")
        pg_started = ""
        with contextlib.suppress(Exception):
            pg_started = str(pg_query("postgres", "SELECT pg_postmaster_start_time()")[0][0])
        return Snapshot(
            user={k: float(v or 0) for k, v in user.items()},
            table_rows_read=int(table_rows or 0),
            mariadbd_cpu=sum(process_cpu(p) for p in self.maria_pid),
            pg_cpu=sum(tree_cpu(p) for p in self.pg_pids),
            host=host_busy(),
            maria_uptime=int(uptime[0][1]) if uptime else 0,
            pg_started=pg_started,
        )

    # -- running a measured command ----------------------------------------------------------------

    def measure(
        self,
        scenario: str,
        round_: str,
        cmd: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Sample:
        self.logs.mkdir(parents=True, exist_ok=True)
        base = self.logs / f"{round_}-{scenario}"
        sample = Sample(scenario=scenario, round=round_, log=str(base.relative_to(self.out_dir)))
        before = self.snapshot()
        with open(f"{base}.out", "w") as out, open(f"{base}.err", "w") as err:
            started_epoch = time.time()
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                cmd, env=env, cwd=str(cwd or self.work), stdout=out, stderr=err,
                start_new_session=True,
            )  # fmt: skip
            sampler = RssSampler(proc.pid)
            sampler.start()
            killer = threading.Timer(self.args.timeout, self._kill, (proc.pid,))
            killer.start()
            _, status, usage = os.wait4(proc.pid, 0)
            sample.wall = time.perf_counter() - t0
            killer.cancel()
            sampler.done.set()
            proc.returncode = os.waitstatus_to_exitcode(status)
        after = self.snapshot()
        sample.rc = proc.returncode
        sample.cpu = usage.ru_utime + usage.ru_stime
        sample.rss_mib = usage.ru_maxrss / 1024
        sample.rss_peak_at = sampler.peak_at
        d = {k: after.user[k] - before.user[k] for k in after.user}
        sample.kimai_rows_examined = after.table_rows_read - before.table_rows_read
        sample.kimai_rows_read = int(d["rows_read"])
        sample.kimai_rows_sent = int(d["rows_sent"])
        sample.kimai_bytes_sent = int(d["bytes_sent"])
        sample.kimai_bytes_received = int(d["bytes_received"])
        sample.kimai_cpu = d["cpu_time"]
        sample.kimai_selects = int(d["select_commands"])
        sample.mariadbd_cpu = after.mariadbd_cpu - before.mariadbd_cpu
        sample.pg_cpu = after.pg_cpu - before.pg_cpu
        busy = after.host - before.host
        sample.others_cpu = max(0.0, busy - sample.cpu - sample.mariadbd_cpu - sample.pg_cpu)
        if after.maria_uptime < before.maria_uptime or after.pg_started != before.pg_started:
            sample.notes.append("a database server restarted during this run (not ours)")
        if min(d.values()) < 0:
            sample.notes.append("MariaDB counters were reset during this run")
        sample.phases["started_epoch"] = started_epoch
        if sample.rc != 0:
            tail = Path(f"{base}.err").read_text(errors="replace").strip().splitlines()[-3:]
            sample.notes.append(f"exit {sample.rc}: {' | '.join(tail)[:300]}")
            log(f"{round_} {scenario}: FAILED (exit {sample.rc}) {' | '.join(tail)[:300]}")
        return sample

    @staticmethod
    def _kill(pid: int) -> None:
        log(f"timeout: stopping process group {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)

    # -- Kimai -------------------------------------------------------------------------------------

    def kimai_url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:3306/{self.kimai_db}?charset=utf8mb4"

    def build_kimai(self) -> None:
        from pipelines.demo.kimai_data import build_kimai

        if self.own_kimai:
            self.maria.q(
                f"CREATE DATABASE `{self.kimai_db}` CHARACTER SET utf8mb4"
                " COLLATE utf8mb4_unicode_ci"
            )
            log(f"building Kimai with {self.n:,} timesheets in {self.kimai_db}")
            summary = build_kimai(self.kimai_url(), seed=self.args.seed, timesheets=self.n)
            self.meta["build_seconds"] = summary.seconds
            self.meta["build_rows"] = summary.rows
            log(f"built in {summary.seconds:.1f} s: {summary.rows}")
        else:
            log(f"reusing Kimai database {self.kimai_db}")
        for table in self._kimai_tables():
            self.maria.q(f"ANALYZE TABLE `{self.kimai_db}`.`{table}`")
        self.n = int(self.maria.one(f"SELECT COUNT(*) FROM `{self.kimai_db}`.`{TS}`"))
        sizes = self.maria.q(
            "SELECT table_name, table_rows, data_length, index_length"
            " FROM information_schema.tables"
            " WHERE table_schema = %s ORDER BY table_name",
            (self.kimai_db,),
        )
        self.meta["kimai_tables"] = {
            r[0]: {"rows": r[1], "data": r[2], "index": r[3]} for r in sizes
        }
        escaped = self.kimai_db.replace("_", "\\_")
        self.maria.q(f"GRANT SELECT ON `{escaped}`.* TO '{self.user}'@'%'")

    def _kimai_tables(self) -> list[str]:
        from pipelines.registry import TABLES

        return [spec.kimai_name("kimai2_") for spec in TABLES]

    def kimai_fingerprint(self) -> tuple[Any, ...]:
        ts = self.maria.q(
            "SELECT COUNT(*), SUM(id), COUNT(description), SUM(CHAR_LENGTH(description)),"
            " SUM(exported), COUNT(modified_at), SUM(UNIX_TIMESTAMP(modified_at))"
            f" FROM `{self.kimai_db}`.`{TS}`"
        )[0]
        tags = self.maria.q(f"SELECT COUNT(*), SUM(timesheet_id) FROM `{self.kimai_db}`.`{TAGS}`")
        return tuple(int(v or 0) for v in (*ts, *tags[0]))

    def replica_fingerprint(self, db: str) -> tuple[Any, ...]:
        ts = pg_query(
            db,
            "SELECT count(*), sum(id), count(description), sum(length(description)),"
            " sum(CASE WHEN exported THEN 1 ELSE 0 END), count(modified_at),"
            " sum(extract(epoch from modified_at))::bigint"
            f' FROM "{REPLICA}".replica_kimai_timesheets',
        )[0]
        tags = pg_query(
            db, f'SELECT count(*), sum(timesheet_id) FROM "{REPLICA}".replica_kimai_timesheet_tags'
        )[0]
        return tuple(int(v or 0) for v in (*ts, *tags))

    def check_replica(self, db: str) -> str:
        try:
            k = self.kimai_fingerprint()
            r = self.replica_fingerprint(db)
        except Exception as exc:
            return f"check failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        if k == r:
            return "ok"
        return f"DIFFERS kimai={k} replica={r}"

    def choose_change_sets(self) -> None:
        lo, hi, count = self.maria.q(
            f"SELECT MIN(id), MAX(id), COUNT(*) FROM `{self.kimai_db}`.`{TS}`"
        )[0]
        self.max_id = int(hi)
        rng = random.Random(self.args.seed + 7)
        c = self.changes
        total = c["updates"] + c["deletes"] + c["silent"] + self.facts_changes + c["inserts"]
        if int(count) == int(hi) - int(lo) + 1:
            pool = rng.sample(range(int(lo), int(hi) + 1), total)
        else:
            ids = [r[0] for r in self.maria.q(f"SELECT id FROM `{self.kimai_db}`.`{TS}`")]
            pool = rng.sample(ids, total)
        sizes = [
            ("updates", c["updates"]),
            ("deletes", c["deletes"]),
            ("silent", c["silent"]),
            ("facts", self.facts_changes),
            ("insert_sources", c["inserts"]),
        ]
        start = 0
        for name, size in sizes:
            self.sets[name] = sorted(pool[start : start + size])
            start += size
        touched = self.touched()
        # the originals of every row a round changes, to restore Kimai after the round
        self.maria.q(f"CREATE DATABASE `{self.undo_db}`")
        self.maria.q(f"CREATE TABLE `{self.undo_db}`.ts LIKE `{self.kimai_db}`.`{TS}`")
        self.maria.q(f"CREATE TABLE `{self.undo_db}`.tags LIKE `{self.kimai_db}`.`{TAGS}`")
        for part in chunked(touched):
            self.maria.q(
                f"INSERT INTO `{self.undo_db}`.ts SELECT * FROM `{self.kimai_db}`.`{TS}`"
                f" WHERE id IN ({id_list(part)})"
            )
            self.maria.q(
                f"INSERT INTO `{self.undo_db}`.tags SELECT * FROM `{self.kimai_db}`.`{TAGS}`"
                f" WHERE timesheet_id IN ({id_list(part)})"
            )
        self.pristine = self.kimai_fingerprint()

    def touched(self) -> list[int]:
        return sorted(
            {
                *self.sets["updates"],
                *self.sets["deletes"],
                *self.sets["silent"],
                *self.sets["facts"],
            }
        )

    def restore_kimai(self) -> None:
        db = f"`{self.kimai_db}`"
        self.maria.q(f"DELETE FROM {db}.`{TS}` WHERE id > %s", (self.max_id,))
        for part in chunked(self.touched()):
            self.maria.q(f"DELETE FROM {db}.`{TS}` WHERE id IN ({id_list(part)})")
        self.maria.q(f"INSERT INTO {db}.`{TS}` SELECT * FROM `{self.undo_db}`.ts")
        self.maria.q(f"INSERT INTO {db}.`{TAGS}` SELECT * FROM `{self.undo_db}`.tags")
        self.maria.q(f"ALTER TABLE {db}.`{TS}` AUTO_INCREMENT = {self.max_id + 1}")
        now = self.kimai_fingerprint()
        if now != self.pristine:
            raise RuntimeError(f"Kimai was not restored: {now} != {self.pristine}")

    def apply_updates(self, ids: Sequence[int], note: str) -> None:
        # what an edit in Kimai does: new values and modified_at = now (UTC)
        for part in chunked(ids):
            self.maria.q(
                f"UPDATE `{self.kimai_db}`.`{TS}` SET description ="
                f" CONCAT(COALESCE(description, ''), ' [{note}]'), modified_at = UTC_TIMESTAMP()"
                f" WHERE id IN ({id_list(part)})"
            )

    def apply_d(self) -> None:
        self.apply_updates(self.sets["updates"], "bench edit")
        cols = [
            "user", "activity_id", "project_id", "start_time", "end_time", "duration",
            "description", "rate", "fixed_rate", "hourly_rate", "exported", "timezone",
            "internal_rate", "billable", "category", "modified_at", "date_tz", "break",
        ]  # fmt: skip
        exprs = [
            "'bench insert'" if c == "description" else "UTC_TIMESTAMP()" if c == "modified_at"
            else f"`{c}`" for c in cols
        ]  # fmt: skip
        for part in chunked(self.sets["insert_sources"]):
            self.maria.q(
                f"INSERT INTO `{self.kimai_db}`.`{TS}` ({', '.join(f'`{c}`' for c in cols)})"
                f" SELECT {', '.join(exprs)} FROM `{self.kimai_db}`.`{TS}`"
                f" WHERE id IN ({id_list(part)})"
            )
        for part in chunked(self.sets["deletes"]):  # tag pairs go by ON DELETE CASCADE
            self.maria.q(f"DELETE FROM `{self.kimai_db}`.`{TS}` WHERE id IN ({id_list(part)})")

    def apply_silent(self) -> None:
        # a bulk "exported" flag: Kimai does not touch modified_at
        for part in chunked(self.sets["silent"]):
            self.maria.q(
                f"UPDATE `{self.kimai_db}`.`{TS}` SET exported = 1 - exported"
                f" WHERE id IN ({id_list(part)})"
            )

    # -- raw pipe (a) and (a7) ---------------------------------------------------------------------

    def _raw_columns(self, tables: list[str]) -> dict[str, list[tuple[str, str, str]]]:
        from pipelines.registry import TABLES

        excluded = {spec.kimai_name("kimai2_"): spec.excluded_columns for spec in TABLES}
        rows = self.maria.q(
            "SELECT table_name, column_name, data_type, column_type FROM information_schema.columns"
            " WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            (self.kimai_db,),
        )
        out: dict[str, list[tuple[str, str, str]]] = {t: [] for t in tables}
        for table, col, dtype, ctype in rows:
            if table in out and col not in excluded.get(table, ()):
                out[table].append((col, dtype.lower(), ctype.lower()))
        return out

    @staticmethod
    def _pg_type(dtype: str, ctype: str) -> str:
        if dtype == "tinyint":
            return "smallint"
        if dtype in ("int", "integer", "smallint", "mediumint"):
            return "integer"
        if dtype == "bigint":
            return "bigint"
        if dtype in ("double", "float", "real"):
            return "double precision"
        if dtype == "decimal":
            return "numeric"
        if dtype in ("datetime", "timestamp"):
            return "timestamp"
        if dtype == "date":
            return "date"
        return "text"

    def raw_script(self, schema: str, tables: list[str]) -> Path:
        """A bash script piping each table from `mariadb --batch` into `psql \\copy`."""
        columns = self._raw_columns(tables)
        cnf = self.work / "bench-client.cnf"
        lines = ["set -euo pipefail"]
        ddl = [f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', f'CREATE SCHEMA "{schema}"']
        for table in tables:
            cols = columns[table]
            ddl.append(
                f'CREATE TABLE "{schema}"."{table}" ('
                + ", ".join(f'"{c}" {self._pg_type(d, t)}' for c, d, t in cols)
                + ")"
            )
            # psql's text COPY refuses a raw carriage return and `mariadb --batch` does not
            # escape it: CRs are dropped server-side (the pipe is a speed reference)
            select = ", ".join(
                f"REPLACE(`{c}`, CHAR(13), '')" if self._pg_type(d, t) == "text" else f"`{c}`"
                for c, d, t in cols
            )
            sql = f"SELECT {select} FROM `{table}`"
            copy = f'\\copy "{schema}"."{table}" FROM STDIN WITH (FORMAT text, NULL \'NULL\')'
            lines.append(
                f"mariadb --defaults-extra-file={shlex.quote(str(cnf))} --batch --skip-column-names"
                f" --quick -e {shlex.quote(sql)} {shlex.quote(self.kimai_db)}"
                f" | psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d {self.raw_db}"
                f" -c {shlex.quote(copy)}"
            )
        for stmt in ddl:
            pg_query(self.raw_db, stmt)
        path = self.work / f"raw-{schema}.sh"
        path.write_text("\n".join(lines) + "\n")
        return path

    def run_raw(self, scenario: str, round_: str) -> Sample:
        tables = [TS] if scenario == "a" else self._kimai_tables()
        schema = "raw" if scenario == "a" else "raw7"
        script = self.raw_script(schema, tables)  # fresh tables, not timed
        sample = self.measure(scenario, round_, ["bash", str(script)], env=self.base_env())
        count = pg_query(self.raw_db, f'SELECT count(*), sum(id) FROM "{schema}"."{TS}"')[0]
        kimai = self.maria.q(f"SELECT COUNT(*), SUM(id) FROM `{self.kimai_db}`.`{TS}`")[0]
        sample.rows = int(count[0] or 0)
        sample.check = (
            "ok"
            if tuple(map(int, count)) == tuple(map(int, kimai))
            else (f"DIFFERS {count} vs {kimai}")
        )
        if scenario == "a7":
            total = 0
            for table in tables:
                total += int(
                    pg_query(self.raw_db, f'SELECT count(*) FROM "{schema}"."{table}"')[0][0]
                )
            sample.phases["rows_all_tables"] = total
        pg_query(self.raw_db, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        return sample

    # -- product runs ------------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(CONTRACT_PREFIXES)}
        env["PGCLIENTENCODING"] = "UTF8"
        return env

    def product_env(self, atlas_db: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = self.base_env()
        env.update(
            KIMAI_DB_HOST="127.0.0.1",
            KIMAI_DB_PORT="3306",
            KIMAI_DB_USER=self.user,
            KIMAI_DB_PASSWORD=self.password,
            KIMAI_DB_DATABASE=self.kimai_db,
            ATLAS_DB_HOST="127.0.0.1",
            ATLAS_DB_PORT="5432",
            ATLAS_DB_USER="postgres",
            ATLAS_DB_PASSWORD="",
            ATLAS_DB_DATABASE=atlas_db,
            ATLAS_SYNC_STATE_DIR=str(self.work / f"state-{atlas_db}"),
        )
        env.update(extra or {})
        return env

    def new_atlas(self, suffix: str) -> str:
        name = f"atlas_bench_{self.id}_{suffix}"
        pg_create(name)
        self.pg_dbs.append(name)
        shutil.rmtree(self.work / f"state-{name}", ignore_errors=True)
        return name

    def drop_atlas(self, name: str) -> None:
        if self.args.keep:
            return
        pg_drop(name)
        shutil.rmtree(self.work / f"state-{name}", ignore_errors=True)

    def product(
        self,
        scenario: str,
        round_: str,
        atlas_db: str,
        args: list[str],
        extra_env: dict[str, str] | None = None,
        check: bool = True,
        profile: bool = False,
    ) -> Sample:
        cmd = [*PRODUCT, *args, "--log-format", "json", "--trigger", "manual"]
        if profile:
            prof_dir = self.out_dir / f"profiles-{self.id}"
            prof_dir.mkdir(parents=True, exist_ok=True)
            cmd = [
                sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all",
                "-o", str(prof_dir / f"{scenario}.txt"), "-m", "pipelines.run",
                *cmd[3:],
            ]  # fmt: skip
        env = self.product_env(atlas_db, extra_env)
        sample = self.measure(scenario, round_, cmd, env=env)
        self._read_audit(sample, atlas_db)
        self._read_phases(sample)
        if args[0] == "transform":
            self._read_dbt(sample, env)
        if check and args[0] in ("sync", "reconcile"):
            sample.check = self.check_replica(atlas_db)
        elif sample.rc == 0 and not sample.check:
            sample.check = "ok"
        if sample.rc != 0:
            sample.check = f"FAILED exit {sample.rc}"
        return sample

    def _read_audit(self, sample: Sample, db: str) -> None:
        try:
            run = pg_query(
                db,
                f'SELECT run_id, status, error FROM "{REPLICA}".sync_runs'
                " ORDER BY started_at DESC LIMIT 1",
            )
        except Exception:
            return
        if not run:
            return
        run_id, status, error = run[0]
        sample.phases["audit_status"] = status
        if status != "success":
            sample.notes.append(f"audit: {status} {error or ''}"[:200])
        cols = [
            "table_name", "kimai_rows", "rows_read", "inserted", "updated", "deleted", "seconds",
            "differences_found", "differences_unrepaired", "kimai_rows_scanned_for_fingerprints",
            "kimai_bytes_read",
        ]  # fmt: skip
        rows = pg_query(
            db, f'SELECT {", ".join(cols)} FROM "{REPLICA}".sync_run_tables WHERE run_id = %s',
            (run_id,),
        )  # fmt: skip
        for r in rows:
            sample.tables[r[0]] = {
                c: (float(v) if isinstance(v, float) else v)
                for c, v in zip(cols[1:], r[1:], strict=True)
            }
        sample.product_bytes = sum(
            int(t.get("kimai_bytes_read") or 0) for t in sample.tables.values()
        )
        sample.product_ts_bytes = int(
            sample.tables.get("timesheets", {}).get("kimai_bytes_read") or 0
        )

    def _read_phases(self, sample: Sample) -> None:
        """Where the time went, from the JSON log lines and the summary on stdout."""
        start = sample.phases.get("started_epoch", 0.0)
        base = self.out_dir / sample.log
        try:
            err = Path(f"{base}.err").read_text(errors="replace").splitlines()
            out = Path(f"{base}.out").read_text(errors="replace")
        except OSError:
            return
        events = []
        for line in err:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                rec = json.loads(line)
                ts = dt.datetime.fromisoformat(rec["ts"]).timestamp()
                events.append((round(ts - start, 3), rec["msg"][:160]))
        sample.phases["events"] = events
        m = re.search(r"sync finished in ([0-9.]+) s", out)
        if m:
            sample.phases["sync_seconds"] = float(m.group(1))

    def _read_dbt(self, sample: Sample, env: dict[str, str]) -> None:
        from pipelines.config import load_settings
        from pipelines.transform import work_dir

        try:
            settings = load_settings(env={k: v for k, v in env.items()}, dotenv=False)
            wd = work_dir(settings)
            self.dbt_dirs.add(wd)
            results = json.loads((wd / "target" / "run_results.json").read_text())
        except Exception as exc:
            sample.notes.append(f"no dbt run_results: {type(exc).__name__}")
            return

        def name(unique_id: str) -> str:
            parts = unique_id.split(".")
            # generic tests end in a hash: test.<project>.<name>.<hash>
            return parts[2] if parts[0] == "test" and len(parts) == 4 else parts[-1]

        nodes = sorted(
            ((r.get("execution_time") or 0.0, name(r["unique_id"]), r.get("status"))
             for r in results.get("results", [])),
            reverse=True,
        )  # fmt: skip
        sample.dbt = {
            "elapsed": results.get("elapsed_time"),
            "nodes": len(nodes),
            "node_seconds_sum": sum(n[0] for n in nodes),
            "top": [(name, round(sec, 2), status) for sec, name, status in nodes[:6]],
            "node_times": {name: round(sec, 3) for sec, name, _ in nodes},
        }

    def create_overlays(self, db: str) -> None:
        import psycopg2

        from pipelines.demo.atlas_overlays import create_atlas_overlays, replica_currencies

        conn = psycopg2.connect(**POSTGRES, dbname=db)
        try:
            projects, customers = replica_currencies(conn, REPLICA)
            create_atlas_overlays(conn, "public", projects, customers, seed=self.args.seed)
        finally:
            conn.close()

    # -- one round ---------------------------------------------------------------------------------

    def keep(self, sample: Sample, position: int) -> Sample:
        sample.position = position
        self.samples.append(sample)
        extra = f" [{sample.check}]" if sample.check and sample.check != "ok" else ""
        log(
            f"{sample.round} {sample.scenario}: {sample.wall:.2f} s wall, {sample.cpu:.2f} s CPU,"
            f" {sample.rss_mib:.0f} MiB, Kimai {sample.kimai_rows_examined:,} rows examined,"
            f" {sample.kimai_bytes_sent / 1e6:.1f} MB sent{extra}"
        )
        return sample

    def run_round(self, index: int, profile: bool = False) -> None:
        round_ = "profile" if profile else f"r{index + 1}"
        pos = 0

        def step(sample: Sample) -> Sample:
            nonlocal pos
            pos += 1
            return self.keep(sample, pos)

        atlas = self.new_atlas(round_)
        n = self.n
        pair = ["b"] if profile else rotate(["a", "a7", "b"], index)
        log(f"round {round_}: order {' '.join(pair)}")
        for s in pair:
            if s == "b":
                sample = self.product("b", round_, atlas, ["sync"], profile=profile)
                sample.rows = n
                step(sample)
            else:
                step(self.run_raw(s, round_))
        self.create_overlays(atlas)
        step(self.product("f0", round_, atlas, ["transform"], profile=profile))

        def run_c() -> None:
            step(self.product("c", round_, atlas, ["sync"], profile=profile))

        def run_e() -> None:
            sample = step(self.product("e0", round_, atlas, ["reconcile"], profile=profile))
            sample.rows = n
            sample = step(self.product("e0t", round_, atlas, ["reconcile", "timesheets"]))
            sample.rows = n
            self.apply_silent()
            sample = step(self.product("e1", round_, atlas, ["reconcile"], profile=profile))
            sample.rows = n
            found = sample.tables.get("timesheets", {}).get("differences_found")
            if found != self.changes["silent"]:
                sample.notes.append(f"expected {self.changes['silent']} differences, found {found}")

        def run_fv() -> None:
            step(self.product("fv", round_, atlas, ["transform"], profile=profile))

        group = {"c": run_c, "e": run_e, "fv": run_fv}
        order = rotate(["c", "e", "fv"], index)
        log(f"round {round_}: then {' '.join(order)}, then d c2 fi0 fis fi")
        for s in order:
            group[s]()
        self.apply_d()
        step(self.product("d", round_, atlas, ["sync"], profile=profile))
        step(self.product("c2", round_, atlas, ["sync"], profile=profile))
        incr = {"ATLAS_TIMESHEET_FACTS_MATERIALIZATION": "table_incremental"}
        step(self.product("fi0", round_, atlas, ["transform"], incr, profile=profile))
        self.apply_updates(self.sets["facts"], "facts edit")
        step(self.product("fis", round_, atlas, ["sync"], profile=profile))
        step(self.product("fi", round_, atlas, ["transform"], incr, profile=profile))
        self.restore_kimai()
        self.drop_atlas(atlas)

    # -- Kimai impact ------------------------------------------------------------------------------

    def capture(self, atlas: str, args: list[str], name: str) -> dict[str, Any]:
        """Run one product command with every statement it sends to Kimai recorded."""
        path = self.work / f"capture-{name}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--capture-sql", str(path), "--",
               *args, "--log-format", "json", "--trigger", "manual"]  # fmt: skip
        sample = self.measure(f"capture-{name}", "impact", cmd, env=self.product_env(atlas))
        statements = json.loads(path.read_text()) if path.exists() else []
        return {"sample": asdict(sample), "statements": statements}

    def replay(self, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Execute the captured SELECTs one by one, measuring each in MariaDB's session status."""
        import pymysql

        conn = maria_connect(self.kimai_db, cursorclass=pymysql.cursors.SSCursor)
        names = (
            "'Rows_read','Rows_sent','Bytes_sent','Handler_read_rnd_next','Handler_read_next',"
            "'Handler_read_key','Handler_read_first'"
        )

        def status() -> dict[str, int]:
            with conn.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute(f"SHOW SESSION STATUS WHERE Variable_name IN ({names})")
                return {k: int(v) for k, v in cur.fetchall()}

        a, b = status(), status()
        overhead = {k: b[k] - a[k] for k in a}
        out = []
        try:
            for st in statements:
                sql = st["sql"]
                kind, table = classify_sql(sql)
                rec = {"kind": kind, "table": table, "via": st["via"], "sql": sql}
                if not sql.lstrip().upper().startswith(("SELECT", "SHOW")):
                    rec.update(replayed=False)
                    out.append(rec)
                    continue
                before = status()
                t0 = time.perf_counter()
                with conn.cursor() as cur:
                    cur.execute(sql)
                    while cur.fetchmany(10_000):
                        pass
                rec["ms"] = (time.perf_counter() - t0) * 1000
                after = status()
                rec.update({k: after[k] - before[k] - overhead[k] for k in after}, replayed=True)
                out.append(rec)
        finally:
            conn.close()
        return out

    def explain(self, sql: str) -> dict[str, Any]:
        conn = maria_connect(self.kimai_db)
        try:
            with conn.cursor() as cur:
                cur.execute(f"ANALYZE FORMAT=JSON {sql}")
                doc = json.loads(cur.fetchall()[0][0])
        finally:
            conn.close()
        return {"tables": plan_summary(doc), "json": doc}

    def set_index(self, on: bool) -> float:
        t0 = time.perf_counter()
        exists = self.maria.one(
            "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = %s"
            " AND table_name = %s AND index_name = 'IDX_ATLAS_SYNC_MODIFIED_AT'",
            (self.kimai_db, TS),
        )
        if on and not exists:
            self.maria.q(
                f"CREATE INDEX IDX_ATLAS_SYNC_MODIFIED_AT ON `{self.kimai_db}`.`{TS}` (modified_at)"
                " ALGORITHM=INPLACE LOCK=NONE"
            )
        elif not on and exists:
            self.maria.q(f"DROP INDEX IDX_ATLAS_SYNC_MODIFIED_AT ON `{self.kimai_db}`.`{TS}`")
        return time.perf_counter() - t0

    def study_run(self, atlas: str, name: str, args: list[str]) -> dict[str, Any]:
        captured = self.capture(atlas, args, name)
        statements = captured["statements"]
        result: dict[str, Any] = {"name": name, "args": args, "sample": captured["sample"]}
        for label, on in (("no_index", False), ("index", True)):
            seconds = self.set_index(on)
            if on:
                result["index_create_seconds"] = seconds
            replayed = self.replay(statements)
            groups: dict[tuple[str, str], dict[str, Any]] = {}
            for rec in replayed:
                g = groups.setdefault(
                    (rec["kind"], rec["table"]),
                    {"kind": rec["kind"], "table": rec["table"], "statements": 0, "Rows_read": 0,
                     "Rows_sent": 0, "Bytes_sent": 0, "ms": 0.0, "example": rec["sql"],
                     "max_rows": -1},
                )  # fmt: skip
                g["statements"] += 1
                for k in ("Rows_read", "Rows_sent", "Bytes_sent", "ms"):
                    g[k] += rec.get(k, 0)
                if rec.get("replayed") and rec.get("Rows_read", 0) > g["max_rows"]:
                    g["max_rows"], g["example"] = rec.get("Rows_read", 0), rec["sql"]
            for g in groups.values():
                if g["max_rows"] >= 0 and g["kind"] not in ("catalog", "session"):
                    with contextlib.suppress(Exception):
                        plan = self.explain(g["example"])
                        g["plan"] = plan["tables"]
                        key = f"{name}-{label}-{g['kind']}-{g['table']}".replace(" ", "_")
                        (self.impact_dir / f"{key}.json").write_text(
                            json.dumps(plan["json"], indent=1)
                        )
            result[label] = list(groups.values())
        self.set_index(False)
        return result

    def impact_ab(self, pairs: int) -> list[dict[str, Any]]:
        """End to end: quiet run and 10k+1k+1k run, without and with the index, interleaved."""
        rows = []
        for p in range(pairs):
            for on in [False, True] if p % 2 == 0 else [True, False]:
                self.set_index(on)
                atlas = self.new_atlas(f"ab{p}{int(on)}")
                init = self.product("ab-init", "impact", atlas, ["sync"], check=False)
                if init.rc != 0:
                    raise RuntimeError("initial load for the index A/B failed")
                quiet = self.product("ab-c", "impact", atlas, ["sync"], check=False)
                self.apply_d()
                change = self.product("ab-d", "impact", atlas, ["sync"])
                self.restore_kimai()
                for s in (quiet, change):
                    rows.append({"pair": p, "index": on, "scenario": s.scenario[3:],
                                 "wall": s.wall, "cpu": s.cpu, "rows_examined":
                                 s.kimai_rows_examined, "bytes_sent": s.kimai_bytes_sent,
                                 "kimai_cpu": s.kimai_cpu, "check": s.check})  # fmt: skip
                log(
                    f"index A/B pair {p} index={on}: quiet {quiet.wall:.2f} s"
                    f" ({quiet.kimai_rows_examined:,} rows examined),"
                    f" changes {change.wall:.2f} s ({change.kimai_rows_examined:,})"
                )
                self.drop_atlas(atlas)
        self.set_index(False)
        return rows

    def run_impact(self) -> None:
        log("Kimai impact: capturing the statements each run sends")
        self.impact_dir = self.out_dir / f"impact-{self.id}"
        self.impact_dir.mkdir(parents=True, exist_ok=True)
        atlas = self.new_atlas("impact")
        init = self.product("impact-init", "impact", atlas, ["sync"])
        if init.rc != 0:
            raise RuntimeError("initial load for the impact study failed")
        runs = [self.study_run(atlas, "quiet sync", ["sync"])]
        runs.append(self.study_run(atlas, "reconcile, no differences", ["reconcile"]))
        self.apply_silent()
        runs.append(
            self.study_run(
                atlas, f"reconcile, {self.changes['silent']:,} differences", ["reconcile"]
            )
        )
        self.apply_d()
        c = self.changes
        runs.append(
            self.study_run(
                atlas,
                f"sync after {c['updates']:,} updates + {c['inserts']:,} inserts"
                f" + {c['deletes']:,} deletes",
                ["sync"],
            )
        )
        self.restore_kimai()
        self.drop_atlas(atlas)
        self.impact = {"runs": runs, "timesheets": self.n}
        if self.args.ab_pairs:
            self.impact["ab"] = self.impact_ab(self.args.ab_pairs)

    # -- everything --------------------------------------------------------------------------------

    def run(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.meta["started"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.meta["command"] = "scripts/bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        self.meta["load_before"] = os.getloadavg()
        self.meta["id"] = self.id
        log(
            f"benchmark id {self.id}: MariaDB {self.kimai_db}, PostgreSQL atlas_bench_{self.id}_*,"
            f" logs in {self.logs}"
        )
        self.setup_server()
        (self.work / "bench-client.cnf").write_text(
            f"[client]\nuser={self.user}\npassword={self.password}\nhost=127.0.0.1\nport=3306\n"
            "protocol=TCP\ndefault-character-set=utf8mb4\n"
        )
        os.chmod(self.work / "bench-client.cnf", 0o600)
        self.build_kimai()
        self.choose_change_sets()
        pg_create(self.raw_db)
        self.pg_dbs.append(self.raw_db)
        self.meta["machine"] = machine(self.maria)
        self.meta["code_start"] = code_version()
        if not self.args.impact_only:
            for i in range(self.args.rounds):
                self.run_round(i)
                self.write_report()
            if self.args.profile:
                log("profiling pass (pyinstrument; not part of the figures)")
                self.run_round(0, profile=True)
        if self.args.impact:
            self.run_impact()
        self.meta["load_after"] = os.getloadavg()
        self.meta["code_end"] = code_version()
        self.meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.write_report()

    def cleanup(self) -> None:
        if not self.args.keep:
            for name in self.pg_dbs:
                pg_drop(name)
            with contextlib.suppress(Exception):
                if self.own_kimai:
                    self.maria.q(f"DROP DATABASE IF EXISTS `{self.kimai_db}`")
            for d in self.dbt_dirs:
                shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log(f"kept: MariaDB {self.kimai_db}; PostgreSQL {', '.join(self.pg_dbs)}; {self.work}")
        with contextlib.suppress(Exception):
            self.maria.q(f"DROP DATABASE IF EXISTS `{self.undo_db}`")
        with contextlib.suppress(Exception):
            self.restore_server()
        self.maria.close()

    def write_report(self) -> None:
        data = {
            "meta": self.meta,
            "shared": self.shared,
            "changes": self.changes,
            "facts_changes": self.facts_changes,
            "timesheets": self.n,
            "samples": [asdict(s) for s in self.samples],
            "impact": self.impact,
        }
        self.out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
        self.out.write_text(render_report(data))
        log(f"report written to {self.out}")


# -- SQL capture (runs inside a product process) ---------------------------------------------------


def capture_main(argv: list[str]) -> int:
    out = Path(argv[0])
    args = argv[2:] if len(argv) > 1 and argv[1] == "--" else argv[1:]
    records: list[dict[str, Any]] = []
    import connectorx
    import pymysql.cursors

    read_sql = connectorx.read_sql

    def logged_read_sql(conn: Any, query: Any, *a: Any, **k: Any) -> Any:
        if str(conn).startswith("mysql"):
            records.append({"via": "connectorx", "sql": str(query)})
        return read_sql(conn, query, *a, **k)

    connectorx.read_sql = logged_read_sql
    execute = pymysql.cursors.Cursor.execute

    def logged_execute(self: Any, query: Any, args: Any = None) -> Any:
        sql = self.mogrify(query, args) if args is not None else query
        records.append({"via": "pymysql", "sql": str(sql)})
        return execute(self, query, args)

    pymysql.cursors.Cursor.execute = logged_execute  # type: ignore[method-assign]
    sys.argv = ["pipelines.run", *args]
    code = 0
    try:
        from pipelines.run import main

        main()
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        out.write_text(json.dumps(records))
    return code


def classify_sql(sql: str) -> tuple[str, str]:
    """(purpose, table) of a statement the product sent to Kimai, from its leading tag.

    The product tags every query (pipelines.sqltag); what it sends untagged is its
    drivers' session handling (transactions, settings), or a query someone forgot to tag.
    """
    from pipelines.sqltag import read_tag

    tag = read_tag(sql)
    if tag is not None:
        return tag
    query = sql.lstrip().upper().startswith(("SELECT", "SHOW", "WITH"))
    return ("untagged query" if query else "session"), ""


# -- machine description ---------------------------------------------------------------------------


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _cmd_version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "-"


def code_version() -> dict[str, Any]:
    """The product code measured: commit, uncommitted files, and a hash of the sources."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(
        [*REPO.glob("pipelines/**/*.py"), *REPO.glob("models/**/*.sql"), *REPO.glob("*.yml")]
    ):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    git = ["git", "-C", str(REPO)]
    return {
        "commit": _cmd_version([*git, "log", "-1", "--format=%h %s"])[:120],
        "dirty": _cmd_version(
            [
                *git,
                "status",
                "--porcelain",
                "--",
                "pipelines",
                "models",
                "macros",
                "dbt_project.yml",
            ]
        ).splitlines(),  # fmt: skip
        "sources_sha256": digest.hexdigest()[:16],
    }


def machine(maria: Maria) -> dict[str, Any]:
    cpu = "-"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    os_name = platform.platform()
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    pg_version = pg_query("postgres", "SHOW server_version")[0][0]
    pg_settings = dict(
        pg_query(
            "postgres",
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN"
            " ('shared_buffers', 'synchronous_commit', 'work_mem', 'max_wal_size')",
        )
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "mariadb": maria.one("SELECT VERSION()"),
        "mariadb_client": _cmd_version(["mariadb", "--version"]),
        "postgresql": pg_version,
        "psql": _cmd_version(["psql", "--version"]),
        "pg_settings": pg_settings,
        "python": platform.python_version(),
        "packages": {
            p: _version(p)
            for p in (
                "dlt",
                "connectorx",
                "pyarrow",
                "adbc-driver-postgresql",
                "dbt-core",
                "dbt-postgres",
                "SQLAlchemy",
                "PyMySQL",
                "psycopg2-binary",
            )
        },  # fmt: skip
    }


# -- report ----------------------------------------------------------------------------------------

TITLES = {
    "a": "(a) raw pipe `mariadb --batch --quick \\| psql \\copy`, timesheets",
    "a7": "(a7) raw pipe, all seven tables (what (b) moves; info)",
    "b": "(b) initial full load, `pipelines.run sync` into an empty Atlas DB",
    "c": "(c) no-change scheduled run, all tables (quiet: nothing in the overlap window)",
    "c2": "(c2) no-change run right after (d) (changed rows still in the 300 s overlap; info)",
    "d": "(d) run after {updates} updates + {inserts} inserts + {deletes} deletes",
    "e0": "(e0) `reconcile`, no differences",
    "e0t": "(e0t) `reconcile timesheets`, no differences (the timesheet table alone; info)",
    "e1": "(e1) `reconcile`, {silent} silent differences",
    "f0": "(f0) first `transform` in a new Atlas DB (cold dbt parse; info)",
    "fv": "(fv) `transform` (dbt build), view mode",
    "fi0": "(fi0) first build with table_incremental (whole facts table; info)",
    "fis": "(fis) sync of the {facts} timesheet changes before (fi) (info)",
    "fi": "(fi) incremental facts refresh after {facts} changes (`transform`, table_incremental)",
}
ORDER = ["a", "a7", "b", "c", "c2", "d", "e0", "e0t", "e1", "f0", "fv", "fi0", "fis", "fi"]
PRODUCT_SCENARIOS = ["b", "c", "c2", "d", "e0", "e0t", "e1", "f0", "fv", "fi0", "fis", "fi"]
FACTS_MODEL = "int_timesheet_facts_incremental"


def header(add: Callable[[str], None], *cells: str) -> None:
    add("| " + " | ".join(cells) + " |")
    add("|" + "---|" * len(cells))


def _fmt_s(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _fmt_bytes(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f} MB"
    if v >= 1e3:
        return f"{v / 1e3:.1f} kB"
    return f"{int(v)} B"


def _spread(values: list[float], fmt: Callable[[float], str] = _fmt_s) -> str:
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}–{fmt(max(values))})"


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _int(v: float) -> str:
    return f"{int(round(v)):,}"


def render_report(data: dict[str, Any]) -> str:
    meta, samples = data["meta"], data["samples"]
    ch = data["changes"]
    fmt_args = {
        "updates": f"{ch['updates']:,}", "inserts": f"{ch['inserts']:,}",
        "deletes": f"{ch['deletes']:,}", "silent": f"{ch['silent']:,}",
        "facts": f"{data['facts_changes']:,}",
    }  # fmt: skip
    by: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        if s["round"].startswith("r"):
            by.setdefault(s["scenario"], []).append(s)
    rounds = sorted({s["round"] for s in samples if s["round"].startswith("r")})
    ratios: dict[str, list[float]] = {"b": [], "a7": [], "b/a7": []}
    for r in rounds:
        w = {s["scenario"]: s["wall"] for s in samples if s["round"] == r}
        if w.get("a"):
            if "b" in w:
                ratios["b"].append(w["b"] / w["a"])
            if "a7" in w:
                ratios["a7"].append(w["a7"] / w["a"])
        if w.get("a7") and "b" in w:
            ratios["b/a7"].append(w["b"] / w["a7"])

    lines: list[str] = []
    add = lines.append
    n = data["timesheets"]
    add(f"# Benchmark: Kimai → Atlas DB sync at {n:,} timesheets")
    add("")
    add(
        f"Generated {meta.get('finished') or meta.get('started')} by `{meta.get('command', '')}`"
        f" ({len(rounds)} interleaved round(s); benchmark id {meta.get('id')})."
        " Figures are medians (min–max) over the rounds;"
        " ratios to the raw pipe are taken per round (same round, adjacent runs) and then the"
        " median is reported. Absolute seconds are indicative on a shared host; use the ratios."
    )
    add("")
    m = meta.get("machine", {})
    if m:
        add("## Machine")
        add("")
        header(
            add,
            "CPU",
            "cores",
            "RAM",
            "OS / kernel",
            "MariaDB",
            "PostgreSQL",
            "Python",
            "dlt",
            "connectorx",
            "pyarrow",
            "ADBC postgresql",
            "dbt-core / dbt-postgres",
        )
        p = m["packages"]
        add(
            f"| {m['cpu']} | {m['cores']} | {m['ram_gib']} GiB | {m['os']} / {m['kernel']} |"
            f" {m['mariadb']} | {m['postgresql']} | {m['python']} | {p['dlt']} |"
            f" {p['connectorx']} | {p['pyarrow']} | {p['adbc-driver-postgresql']} |"
            f" {p['dbt-core']} / {p['dbt-postgres']} |"
        )
        add("")
        sh = data.get("shared", {})
        pgs = m.get("pg_settings", {})
        add(
            f"Clients: {m.get('mariadb_client', '')}; {m.get('psql', '')}. PostgreSQL settings:"
            f" {', '.join(f'{k} {v}' for k, v in sorted(pgs.items()))} (defaults). MariaDB"
            f" `innodb_buffer_pool_size` {sh.get('buffer_pool_during', 0) // MIB} MiB during the"
            f" run (was {sh.get('buffer_pool_before', 0) // MIB} MiB; raised at runtime so the"
            " table is cached as in the baseline, and restored at the end); `userstat` switched on"
            f" at runtime for the per-user and per-table counters (was {sh.get('userstat_before')};"
            " restored at the end). Both are runtime-only (`SET GLOBAL`, never persisted)."
        )
        add("")
    code, code_end = meta.get("code_start"), meta.get("code_end")
    if code:
        changed = code_end and code_end["sources_sha256"] != code["sources_sha256"]
        add(
            f"Product code measured: commit {code['commit']}"
            + (f"; uncommitted changes in {', '.join(code['dirty'])}" if code["dirty"] else "")
            + f"; sources hash {code['sources_sha256']}"
            + (
                f" at the start and {code_end['sources_sha256']} at the end (**the code changed"
                " while the benchmark ran**: other sessions were editing it)."
                if changed
                else "."
            )
        )
        add("")
    tables = meta.get("kimai_tables", {})
    if tables:
        ts = tables.get(TS, {})
        add(
            f"Kimai data: the tests' generator (`build_kimai`, seed {meta.get('seed', 42)}),"
            f" {n:,} timesheets; `{TS}` ≈ {_fmt_bytes(ts.get('data', 0))} data +"
            f" {_fmt_bytes(ts.get('index', 0))} indexes (InnoDB);"
            + (f" built in {meta['build_seconds']:.0f} s;" if meta.get("build_seconds") else "")
            + " rows per table: "
            + ", ".join(f"{k} {v['rows']:,}" for k, v in tables.items())
            + " (InnoDB estimates)."
        )
        add("")

    # noise
    others = [
        s["others_cpu"] / s["wall"]
        for s in samples
        if s["wall"] > 0.5 and s["round"].startswith("r")
    ]
    restarts = [s for s in samples if any("restarted" in x for x in s.get("notes", []))]
    add("## Conditions and noise")
    add("")
    lb, la = meta.get("load_before"), meta.get("load_after")
    add(
        "The database servers are shared with other sessions running test suites at the same"
        " time. Load average at the start "
        + (f"{lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}" if lb else "–")
        + ", at the end "
        + (f"{la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}" if la else "–")
        + f" (2 cores). CPU used by other processes during the timed runs: median"
        f" {_med(others):.2f} cores (max {max(others, default=0):.2f}) — the column 'others CPU'"
        " in the tables. MariaDB rows/bytes/CPU are per-user and per-table counters of the"
        " benchmark's own login and database, so they are not affected by other sessions;"
        " the PostgreSQL CPU column is the whole server (includes others)."
        + (f" {len(restarts)} run(s) saw a server restart (marked)." if restarts else "")
    )
    add("")

    # summary vs targets
    add("## Summary and targets (issue 7)")
    add("")
    header(
        add,
        "scenario",
        "wall s, median (min–max)",
        "ratio to (a)",
        "CPU s",
        "peak RSS MiB",
        "rows/s",
        "Kimai rows examined",
        "Kimai bytes sent",
        "target",
        "met?",
    )

    verdicts: dict[str, str] = {}

    def walls(k: str) -> list[float]:
        return [s["wall"] for s in by.get(k, [])]

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("**met**" if ok else "**not met**")

    if ratios["b"]:
        verdicts["b"] = verdict(_med(ratios["b"]) <= 1.0)
    if walls("c"):
        verdicts["c"] = verdict(_med(walls("c")) <= 3.0)
    if walls("d"):
        verdicts["d"] = verdict(_med(walls("d")) <= 5.0)
    if walls("fi"):
        verdicts["fi"] = verdict(_med(walls("fi")) <= 5.0)
    shares: dict[str, float] = {}
    if by.get("e0") and by.get("b"):
        prod_b = _med([s["product_ts_bytes"] for s in by["b"]])
        prod_e0 = _med([s["product_ts_bytes"] for s in by["e0"]])
        if prod_b:
            shares["product"] = prod_e0 / prod_b
        wire_b = _med([s["kimai_bytes_sent"] for s in by["b"]])
        if wire_b:
            shares["all7"] = _med([s["kimai_bytes_sent"] for s in by["e0"]]) / wire_b
        wire_a = _med([s["kimai_bytes_sent"] for s in by.get("a", [])])
        if wire_a and by.get("e0t"):
            shares["wire"] = _med([s["kimai_bytes_sent"] for s in by["e0t"]]) / wire_a
        share = shares.get("wire", shares.get("product"))
        ok = _med(walls("e0")) <= 10.0 and share is not None and share <= 0.01
        verdicts["e0"] = verdict(ok)
    for k in ORDER:
        rows = by.get(k)
        if not rows:
            continue
        title = TITLES[k].format(**fmt_args)
        ratio = {
            "a": "1.0×",
            "a7": _spread(ratios["a7"], lambda v: f"{v:.2f}×"),
            "b": _spread(ratios["b"], lambda v: f"{v:.2f}×"),
        }.get(k, "")
        rps = ""
        if any(s["rows"] for s in rows):
            rps = _int(_med([s["rows"] / s["wall"] for s in rows if s["wall"]]))
        target = TARGETS.get(k, "")
        add(
            f"| {title} | {_spread([s['wall'] for s in rows])} | {ratio} |"
            f" {_fmt_s(_med([s['cpu'] for s in rows]))} | {max(s['rss_mib'] for s in rows):.0f} |"
            f" {rps} | {_int(_med([s['kimai_rows_examined'] for s in rows]))} |"
            f" {_fmt_bytes(_med([s['kimai_bytes_sent'] for s in rows]))} | {target} |"
            f" {verdicts.get(k, '')} |"
        )
    model = [s["dbt"].get("node_times", {}).get(FACTS_MODEL) for s in by.get("fi", [])]
    model = [v for v in model if v is not None]
    if model:
        ok = _med(model) <= 5.0
        add(
            f"| (fi) the same, the model `{FACTS_MODEL}` alone (dbt node time) |"
            f" {_spread(model)} | | | | | | | {TARGETS['fi']} (model only) | {verdict(ok)} |"
        )
    prod = [s for k in PRODUCT_SCENARIOS for s in by.get(k, [])]
    if prod:
        worst = max(prod, key=lambda s: s["rss_mib"])
        ok = worst["rss_mib"] <= 300
        add(
            f"| peak RSS of the runner, every product run | | | | {worst['rss_mib']:.0f}"
            f" (in ({worst['scenario']})) | | | | {TARGETS['rss']} | {verdict(ok)} |"
        )
        verdicts["rss"] = verdict(ok)
    add("")
    if ratios["b/a7"]:
        add(
            f"(b) moves all seven tables; against the seven-table raw pipe (a7) its ratio is"
            f" {_spread(ratios['b/a7'], lambda v: f'{v:.2f}×')}."
        )
        add("")
    if shares:
        add(
            "Reconcile bytes read from Kimai, as a share of the table's bytes: the timesheet"
            " table on the wire (MariaDB `BYTES_SENT` of (e0t) ÷ of (a), which sends the whole"
            f" table) **{shares.get('wire', float('nan')):.2%}** (the verdict); as the product"
            " counts it (`sync_run_tables.kimai_bytes_read` of timesheets, (e0) ÷ (b))"
            f" {shares.get('product', float('nan')):.2%}; all seven tables on the wire ((e0) ÷"
            f" (b)) {shares.get('all7', float('nan')):.2%}."
        )
        add("")

    # per scenario tables
    add("## Scenarios, round by round")
    add("")
    add(
        "wall and CPU (user+sys of the whole process tree) in seconds; peak RSS = largest single"
        " process (wait4 `ru_maxrss`), 'at' = when the sampled peak happened; Kimai rows examined"
        " = `TABLE_STATISTICS.ROWS_READ` of the benchmark's database; sent/bytes/MariaDB CPU ="
        " `USER_STATISTICS` of the benchmark's login; 'product bytes' ="
        " `sync_run_tables.kimai_bytes_read` (Arrow bytes the product counts); others CPU ="
        " host CPU used by processes other than this run and the two database servers."
    )
    add("")
    for k in ORDER:
        rows = by.get(k)
        if not rows:
            continue
        add(f"### {TITLES[k].format(**fmt_args)}")
        add("")
        header(
            add,
            "round",
            "pos",
            "wall s",
            "ratio to (a)",
            "CPU s",
            "peak RSS MiB (at s)",
            "rows/s",
            "Kimai rows examined",
            "rows sent",
            "bytes sent",
            "product bytes",
            "MariaDB CPU s",
            "PG CPU s",
            "others CPU s",
            "check",
        )
        for s in sorted(rows, key=lambda s: s["round"]):
            a = next((x for x in by.get("a", []) if x["round"] == s["round"]), None)
            ratio = f"{s['wall'] / a['wall']:.2f}×" if a and k in ("b", "a7") else ""
            rps = _int(s["rows"] / s["wall"]) if s["rows"] and s["wall"] else ""
            notes = "; ".join(s.get("notes", []))
            add(
                f"| {s['round']} | {s['position']} | {_fmt_s(s['wall'])} | {ratio} |"
                f" {_fmt_s(s['cpu'])} | {s['rss_mib']:.0f} ({s['rss_peak_at']:.1f}) | {rps} |"
                f" {_int(s['kimai_rows_examined'])} | {_int(s['kimai_rows_sent'])} |"
                f" {_fmt_bytes(s['kimai_bytes_sent'])} |"
                f" {_fmt_bytes(s['product_bytes']) if s['product_bytes'] else ''} |"
                f" {s['kimai_cpu']:.2f} | {s['pg_cpu']:.2f} | {s['others_cpu']:.2f} |"
                f" {s['check']}{' — ' + notes if notes else ''} |"
            )
        add(
            f"| **median** | | **{_fmt_s(_med([s['wall'] for s in rows]))}** | | "
            f"{_fmt_s(_med([s['cpu'] for s in rows]))} | {_med([s['rss_mib'] for s in rows]):.0f} |"
            f" | {_int(_med([s['kimai_rows_examined'] for s in rows]))} |"
            f" {_int(_med([s['kimai_rows_sent'] for s in rows]))} |"
            f" {_fmt_bytes(_med([s['kimai_bytes_sent'] for s in rows]))} | | | | | |"
        )
        add("")
        add(_breakdown(k, rows))
        add("")

    if data.get("impact"):
        add(render_impact(data["impact"]))
    add("## Method")
    add("")
    add(
        "* One command: `scripts/bench` (defaults: 1,000,000 timesheets, 3 rounds). Kimai is"
        " built with the tests' generator in a database of its own, the product reads it with a"
        " login that has SELECT only, every Atlas DB is a fresh PostgreSQL database per round"
        " (and a fresh dlt state directory), the raw pipe writes a fresh table per round. All"
        " are dropped at the end unless `--keep`."
    )
    add(
        "* Each round: the pair (a), (a7), (b) in rotated order; Atlas overlays + (f0);"
        " then (c), (e0)+(e1), (fv) in rotated order (each starts and ends with the replica equal"
        " to Kimai and nothing in the cursor's overlap window); then (d), (c2), (fi0), (fis), (fi)"
        " (these bump `modified_at`, so they come last). Kimai is then restored to the generated"
        " state (changed rows re-inserted from a copy), so every round measures the same data."
    )
    add(
        "* Changes: updates append to `description` and set `modified_at = UTC_TIMESTAMP()` (what"
        " an edit in Kimai does); inserts copy existing rows with a new id; deletes cascade to the"
        " tag pairs (Kimai's FKs); silent differences flip `exported` without touching"
        " `modified_at` (Kimai's bulk export does this)."
    )
    add(
        "* Timed: the whole command (`/proc`-free `wait4` rusage), interpreter start-up and exit"
        " included. Checks (not timed): row count, sum(id), count and total length of"
        " descriptions, sum(exported), count and epoch sum of modified_at, and the tag-pair count"
        " and id sum, Kimai vs replica after every sync/reconcile."
    )
    add(
        "* The raw pipe drops carriage returns server-side (`REPLACE(col, CHAR(13), '')` on text"
        " columns): psql's text COPY rejects a raw CR and `mariadb --batch` does not escape it; it"
        " also turns the string 'NULL' into NULL. It is a speed reference, not an exact copy."
    )
    add("")
    return "\n".join(lines) + "\n"


def _breakdown(k: str, rows: list[dict[str, Any]]) -> str:
    """The median round's breakdown: per-table seconds, phases from the log, dbt nodes."""
    rows = sorted(rows, key=lambda s: s["wall"])
    s = rows[len(rows) // 2]
    parts = []
    if s.get("tables"):
        t = s["tables"]
        total = sum(float(v.get("seconds") or 0) for v in t.values())
        sync_s = s["phases"].get("sync_seconds")
        items = ", ".join(
            f"{name} {float(v.get('seconds') or 0):.2f} s ({int(v.get('rows_read') or 0):,} rows"
            f" read, {_fmt_bytes(int(v.get('kimai_bytes_read') or 0))})"
            for name, v in sorted(t.items(), key=lambda kv: -float(kv[1].get("seconds") or 0))
        )
        parts.append(
            f"Median round {s['round']}: wall {_fmt_s(s['wall'])} s ="
            + (
                f" sync() {sync_s:.2f} s + start-up/lock/audit/exit {s['wall'] - sync_s:.2f} s;"
                if sync_s
                else ""
            )
            + f" per-table extract time (audit) {total:.2f} s: {items}."
        )
        events = s["phases"].get("events") or []
        if events:
            first = events[0][0]
            last = events[-1][0]
            parts.append(
                f"First progress line at {first:.2f} s (start-up, connect, reflection, dlt"
                f" pipeline, key sets, first table), last at {last:.2f} s; after it"
                f" {s['wall'] - last:.2f} s (dlt normalize + load/merge, key indexes, audit, exit)."
            )
        diffs = {n: v.get("differences_found") for n, v in t.items() if v.get("differences_found")}
        if diffs:
            parts.append(f"Differences found: {diffs}.")
        ups = {n: (v.get("inserted"), v.get("updated"), v.get("deleted")) for n, v in t.items()
               if any((v.get("inserted"), v.get("updated"), v.get("deleted")))}  # fmt: skip
        if ups and k != "b":
            parts.append(f"Written (inserted, updated, deleted): {ups}.")
    if s.get("dbt"):
        d = s["dbt"]
        top = ", ".join(f"{name} {sec:.2f} s" for name, sec, _ in d.get("top", []))
        parts.append(
            f"dbt ({s['round']}): {d.get('nodes')} nodes, dbt elapsed"
            f" {float(d.get('elapsed') or 0):.2f} s"
            f" of {_fmt_s(s['wall'])} s wall (the rest: interpreter, imports, parse, lock, audit);"
            f" slowest nodes: {top}."
        )
    return " ".join(parts)


def render_impact(impact: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"## Kimai impact at {impact['timesheets']:,} timesheets")
    add("")
    add(
        "Every statement a run sends to Kimai was captured inside the product process"
        " (connectorx and PyMySQL calls), then replayed one by one in a MariaDB session,"
        " measuring the session's `Rows_read` (rows examined), `Rows_sent`, `Bytes_sent` (text"
        " protocol; the product uses connectorx's binary protocol for data) and time,"
        " first without and then with `CREATE INDEX IDX_ATLAS_SYNC_MODIFIED_AT ON"
        " kimai2_timesheet (modified_at)`. Plans: `ANALYZE FORMAT=JSON` of the statement of each"
        " kind with the most rows examined (access type, key, estimated rows → actual r_rows"
        " per loop, buffer-pool pages accessed)."
    )
    add("")
    for run in impact.get("runs", []):
        add(f"### {run['name']} (`pipelines.run {' '.join(run['args'])}`)")
        add("")
        header(
            add,
            "kind",
            "table",
            "statements",
            "rows examined, no index → index",
            "rows sent",
            "bytes sent",
            "ms, no index → index",
            "plan, no index",
            "plan, index",
        )
        idx = {(g["kind"], g["table"]): g for g in run.get("index", [])}
        tot = {"n": 0, "rr": 0, "rri": 0, "ms": 0.0, "msi": 0.0, "rs": 0, "bs": 0}
        for g in sorted(run.get("no_index", []), key=lambda g: -g["Rows_read"]):
            gi = idx.get((g["kind"], g["table"]), {})
            tot["n"] += g["statements"]
            tot["rr"] += g["Rows_read"]
            tot["rri"] += gi.get("Rows_read", 0)
            tot["ms"] += g["ms"]
            tot["msi"] += gi.get("ms", 0)
            tot["rs"] += g["Rows_sent"]
            tot["bs"] += g["Bytes_sent"]
            add(
                f"| {g['kind']} | {g['table']} | {g['statements']} |"
                f" {_int(g['Rows_read'])} → {_int(gi.get('Rows_read', 0))} |"
                f" {_int(g['Rows_sent'])} |"
                f" {_fmt_bytes(g['Bytes_sent'])} | {g['ms']:.0f} → {gi.get('ms', 0):.0f} |"
                f" {_plan(g.get('plan'))} | {_plan(gi.get('plan'))} |"
            )
        add(
            f"| **total** | | {tot['n']} | **{_int(tot['rr'])} → {_int(tot['rri'])}** |"
            f" {_int(tot['rs'])} | {_fmt_bytes(tot['bs'])} |"
            f" {tot['ms']:.0f} → {tot['msi']:.0f} | | |"
        )
        add("")
        s = run.get("sample", {})
        if s:
            add(
                f"The captured run itself: {_fmt_s(s['wall'])} s wall, Kimai rows examined"
                f" {_int(s['kimai_rows_examined'])}, sent {_int(s['kimai_rows_sent'])} rows /"
                f" {_fmt_bytes(s['kimai_bytes_sent'])} (binary protocol), MariaDB CPU"
                f" {s['kimai_cpu']:.2f} s."
                + (
                    f" Creating the index took {run['index_create_seconds']:.1f} s."
                    if run.get("index_create_seconds")
                    else ""
                )
            )
            add("")
        examples = [g for g in run.get("no_index", []) if g["kind"] not in ("catalog", "session")]
        if examples:
            add("<details><summary>example statements</summary>")
            add("")
            for g in examples:
                sql = " ".join(g["example"].split())
                sql = re.sub(r"IN \(([0-9, ]{60})[0-9, ]*\)", r"IN (\1…)", sql)
                if len(sql) > 400:
                    sql = sql[:200] + " … " + sql[-150:]
                add(f"* {g['kind']} ({g['table']}): `{sql}`")
            add("")
            add("</details>")
            add("")
    ab = impact.get("ab") or []
    if ab:
        add("### End to end, without and with the index (interleaved)")
        add("")
        header(
            add,
            "run",
            "index",
            "wall s, median (min–max)",
            "CPU s",
            "Kimai rows examined",
            "Kimai bytes sent",
            "MariaDB CPU s",
            "n",
        )
        for scen, label in (("c", "quiet sync (c)"), ("d", "sync after the changes of (d)")):
            for on in (False, True):
                rows = [r for r in ab if r["scenario"] == scen and r["index"] == on]
                if not rows:
                    continue
                add(
                    f"| {label} | {'yes' if on else 'no'} | {_spread([r['wall'] for r in rows])} |"
                    f" {_fmt_s(_med([r['cpu'] for r in rows]))} |"
                    f" {_int(_med([r['rows_examined'] for r in rows]))} |"
                    f" {_fmt_bytes(_med([r['bytes_sent'] for r in rows]))} |"
                    f" {_med([r['kimai_cpu'] for r in rows]):.2f} | {len(rows)} |"
                )
        add("")
    return "\n".join(lines)


def plan_summary(doc: Any) -> list[dict[str, Any]]:
    """The table accesses of an ``ANALYZE FORMAT=JSON`` document, in execution order."""
    tables: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            t = node.get("table")
            if isinstance(t, dict) and not str(t.get("table_name", "<")).startswith("<"):
                tables.append({
                    **{k: t.get(k) for k in ("table_name", "access_type", "key", "rows",
                                             "r_rows", "r_loops", "r_total_time_ms")},
                    "pages": (t.get("r_engine_stats") or {}).get("pages_accessed"),
                })  # fmt: skip
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return tables


def _plan(plan: list[dict[str, Any]] | None) -> str:
    if not plan:
        return ""
    out = []
    for t in plan[:3]:
        key = f" `{t['key']}`" if t.get("key") else ""
        loops = t.get("r_loops") or 1
        out.append(
            f"{t.get('access_type')}{key}, est {_int(t.get('rows') or 0)}"
            f" → {_int(t.get('r_rows') or 0)}"
            + (f" ×{loops} loops" if loops > 1 else "")
            + (f", {_int(t['pages'])} pages" if t.get("pages") else "")
        )
    return "; ".join(out)


# -- command line ----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark the Kimai → Atlas DB sync against a raw mariadb | psql pipe "
        "(issue 7) and write a Markdown report.",
    )
    p.add_argument("--timesheets", type=int, default=1_000_000, help="Kimai size (default 1M)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--out", default=str(REPO / "bench-out" / "report.md"), help="report file")
    p.add_argument("--keep", action="store_true", help="keep the databases it created")
    p.add_argument("--smoke", action="store_true",
                   help="quick run of every scenario for CI: 20k timesheets, 1 round")  # fmt: skip
    p.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    p.add_argument("--no-impact", dest="impact", action="store_false",
                   help="skip the Kimai-impact study (statements, EXPLAIN, index A/B)")  # fmt: skip
    p.add_argument("--impact-only", action="store_true",
                   help="only the Kimai-impact study (e.g. at --timesheets 5000000)")  # fmt: skip
    p.add_argument("--ab-pairs", type=int, default=None,
                   help="index A/B pairs in the impact study (default: --rounds)")  # fmt: skip
    p.add_argument("--profile", action="store_true",
                   help="an extra, untimed round under pyinstrument (profiles-*/)")  # fmt: skip
    p.add_argument("--buffer-pool-mib", type=int, default=None,
                   help="raise innodb_buffer_pool_size to this at runtime, restored at the end "
                        "(default 1024; 0 = leave it)")  # fmt: skip
    p.add_argument("--kimai-database", default=None,
                   help="reuse a Kimai database an earlier --keep run built")  # fmt: skip
    p.add_argument("--timeout", type=float, default=1800, help="per command, seconds")
    args = p.parse_args(argv)
    if args.smoke:
        if "--timesheets" not in argv:
            args.timesheets = 20_000
        if "--rounds" not in argv:
            args.rounds = 1
        if args.ab_pairs is None:
            args.ab_pairs = 1
        if args.buffer_pool_mib is None:
            args.buffer_pool_mib = 0
    if args.buffer_pool_mib is None:
        args.buffer_pool_mib = 1024
    if args.ab_pairs is None:
        args.ab_pairs = args.rounds
    if args.impact_only:
        args.impact = True
    if args.kimai_database and not args.kimai_database.startswith("kimai_bench_"):
        p.error("--kimai-database must name a database an earlier benchmark built (kimai_bench_*)")
    if args.rounds < 1 or args.timesheets < 1000:
        p.error("--rounds must be ≥ 1 and --timesheets ≥ 1000")
    return args


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--capture-sql":
        return capture_main(argv[1:])
    if argv and argv[0] == "--render":
        # re-render a report from the JSON a run saved next to it: --render JSON [OUT]
        source = Path(argv[1])
        target = Path(argv[2]) if len(argv) > 2 else source.with_suffix(".md")
        target.write_text(render_report(json.loads(source.read_text())))
        return 0
    args = parse_args(argv)
    bench = Bench(args)
    bench.meta["seed"] = args.seed

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        bench.cleanup()
    failed = [s for s in bench.samples if s.rc != 0]
    if failed:
        log(f"{len(failed)} run(s) failed: {', '.join(f'{s.round} {s.scenario}' for s in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
