"""The benchmark itself: builds Kimai, runs every scenario in interleaved rounds, measures."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchlib.capture import classify_sql
from benchlib.common import (
    BASE_CHANGES,
    BI_QUESTIONS,
    CONTRACT_PREFIXES,
    FACTS_CHANGES,
    MIB,
    PRODUCT,
    REPLICA,
    REPO,
    REPORT_ZONE,
    TAGS,
    TS,
    USER_PREFIX,
    chunked,
    id_list,
    log,
    log_events,
    rotate,
)
from benchlib.delta import delta_study
from benchlib.follow import follow_study
from benchlib.machine import code_version, machine
from benchlib.measure import Sample, Snapshot
from benchlib.procfs import RssSampler, host_busy, process_cpu, server_pids, tree_cpu
from benchlib.report import plan_summary, render_report
from benchlib.servers import Maria, pg_create, pg_drop
from pipelines.demo.servers import MARIADB, POSTGRES, mariadb_connect, pg_query


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
        self.follow: dict[str, Any] | None = None
        self.delta: dict[str, Any] | None = None
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
        sample.kimai_rows_sent = int(d["rows_sent"])
        sample.kimai_bytes_sent = int(d["bytes_sent"])
        sample.kimai_cpu = d["cpu_time"]
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
        return f"mysql+pymysql://root@127.0.0.1:{MARIADB['port']}/{self.kimai_db}?charset=utf8mb4"

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
        if self.args.binlog:  # the binlog feed's grants (docs/binlog.md)
            self.maria.q(f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{self.user}'@'%'")

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

    def bump_all(self) -> None:
        # what an upgrade migration touching every row does; `unbump_all` restores the values
        undo, ts = f"`{self.undo_db}`.modified", f"`{self.kimai_db}`.`{TS}`"
        self.maria.q(f"DROP TABLE IF EXISTS {undo}")
        self.maria.q(
            f"CREATE TABLE {undo} (id INT PRIMARY KEY, modified_at DATETIME)"
            f" SELECT id, modified_at FROM {ts}"
        )
        self.maria.q(f"UPDATE {ts} SET modified_at = UTC_TIMESTAMP()")

    def unbump_all(self) -> None:
        undo, ts = f"`{self.undo_db}`.modified", f"`{self.kimai_db}`.`{TS}`"
        self.maria.q(
            f"UPDATE {ts} t JOIN {undo} u ON u.id = t.id SET t.modified_at = u.modified_at"
        )
        self.maria.q(f"DROP TABLE {undo}")

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
        allowed = {spec.kimai_name("kimai2_"): spec.allowed_columns for spec in TABLES}
        rows = self.maria.q(
            "SELECT table_name, column_name, data_type, column_type FROM information_schema.columns"
            " WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            (self.kimai_db,),
        )
        out: dict[str, list[tuple[str, str, str]]] = {t: [] for t in tables}
        for table, col, dtype, ctype in rows:
            listed = allowed.get(table)
            wanted = listed is None or col in listed
            if table in out and col not in excluded.get(table, ()) and wanted:
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

    def raw_script(self, schema: str, tables: list[str], indexed: bool = False) -> Path:
        """A bash script piping each table from `mariadb --batch` into `psql \\copy`.

        `indexed`: each table also gets `synced_at` (filled by its default) and, after its
        copy, the very CREATE INDEX / PRIMARY KEY statements the product issues after a
        first load (pipelines.adapters.layout), so the reference does the same work as (b).
        """
        columns = self._raw_columns(tables)
        indexes = self._product_indexes(schema) if indexed else {}
        cnf = self.work / "bench-client.cnf"
        lines = ["set -euo pipefail"]
        ddl = [f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', f'CREATE SCHEMA "{schema}"']
        for table in tables:
            cols = columns[table]
            synced = ', "synced_at" timestamptz DEFAULT now()' if indexed else ""
            keys = self._keys.get(table, ()) if indexed else ()
            ddl.append(
                f'CREATE TABLE "{schema}"."{table}" ('
                + ", ".join(
                    f'"{c}" {self._pg_type(d, t)}' + (" NOT NULL" if c in keys else "")
                    for c, d, t in cols
                )
                + synced
                + ")"
            )
            # psql's text COPY refuses a raw carriage return and `mariadb --batch` does not
            # escape it: CRs are dropped server-side (the pipe is a speed reference)
            select = ", ".join(
                f"REPLACE(`{c}`, CHAR(13), '')" if self._pg_type(d, t) == "text" else f"`{c}`"
                for c, d, t in cols
            )
            sql = f"SELECT {select} FROM `{table}`"
            names = ", ".join(f'"{c}"' for c, _d, _t in cols)
            copy = (
                f'\\copy "{schema}"."{table}" ({names}) FROM STDIN'
                " WITH (FORMAT text, NULL 'NULL')"
            )
            psql = f"psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d {self.raw_db}"
            lines.append(
                f"mariadb --defaults-extra-file={shlex.quote(str(cnf))} --batch --skip-column-names"
                f" --quick -e {shlex.quote(sql)} {shlex.quote(self.kimai_db)}"
                f" | {psql} -c {shlex.quote(copy)}"
            )
            if indexes.get(table):
                # as the product: the indexes of each table once its copy is in
                script = "; ".join(indexes[table])
                lines.append(f"{psql} -c {shlex.quote(script)}")
        for stmt in ddl:
            pg_query(self.raw_db, stmt)
        path = self.work / f"raw-{schema}.sh"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def _keys(self) -> dict[str, tuple[str, ...]]:
        from pipelines.registry import TABLES

        return {spec.kimai_name("kimai2_"): spec.primary_key for spec in TABLES}

    def _product_indexes(self, schema: str) -> dict[str, list[str]]:
        """Per Kimai table: the product's first-load index and key DDL, on the raw copy."""
        import dataclasses
        import types

        from pipelines.adapters.layout import index_ddl, primary_key_ddl
        from pipelines.registry import DATA_ISSUES, TABLES

        out: dict[str, list[str]] = {}
        for spec in TABLES:
            table = spec.kimai_name("kimai2_")
            raw = types.SimpleNamespace(
                spec=dataclasses.replace(spec, replica_table=table), key=spec.primary_key
            )
            # the raw copy has Kimai's columns only: not the product's data_issues
            ddl = [d for d in index_ddl(schema, raw).values() if DATA_ISSUES not in d]
            out[table] = [*ddl, primary_key_ddl(schema, raw)]
        return out

    def run_raw(self, scenario: str, round_: str) -> Sample:
        tables = [TS] if scenario == "a" else self._kimai_tables()
        schema = {"a": "raw", "a7": "raw7", "a7i": "raw7i"}[scenario]
        # fresh tables, not timed
        script = self.raw_script(schema, tables, indexed=scenario == "a7i")
        sample = self.measure(scenario, round_, ["bash", str(script)], env=self.base_env())
        count = pg_query(self.raw_db, f'SELECT count(*), sum(id) FROM "{schema}"."{TS}"')[0]
        kimai = self.maria.q(f"SELECT COUNT(*), SUM(id) FROM `{self.kimai_db}`.`{TS}`")[0]
        sample.rows = int(count[0] or 0)
        sample.check = (
            "ok"
            if tuple(map(int, count)) == tuple(map(int, kimai))
            else (f"DIFFERS {count} vs {kimai}")
        )
        if scenario in ("a7", "a7i"):
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
            KIMAI_DB_PORT=str(MARIADB["port"]),
            KIMAI_DB_USER=self.user,
            KIMAI_DB_PASSWORD=self.password,
            KIMAI_DB_DATABASE=self.kimai_db,
            ATLAS_DB_HOST="127.0.0.1",
            ATLAS_DB_PORT="5432",
            ATLAS_DB_USER="postgres",
            ATLAS_DB_PASSWORD="",
            ATLAS_DB_DATABASE=atlas_db,
            ATLAS_SYNC_STATE_DIR=str(self.work / f"state-{atlas_db}"),
            ATLAS_REPORT_TIMEZONE=REPORT_ZONE,
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
        command = args[0] if args else "run"
        if command == "transform":
            self._read_dbt(sample, env)
        if check and command in ("sync", "reconcile", "run"):
            sample.check = self.check_replica(atlas_db)
        elif sample.rc == 0 and not sample.check:
            sample.check = "ok"
        if sample.rc != 0:
            sample.check = f"FAILED exit {sample.rc}"
        return sample

    def question(self, scenario: str, round_: str, atlas_db: str, sql: str) -> Sample:
        """Time one BI question on the views: psql, a new connection, the whole result."""
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"]
        cmd += ["-d", atlas_db, "-o", "/dev/null", "-c", sql]
        sample = self.measure(scenario, round_, cmd, env=self.base_env())
        sample.check = "ok" if sample.rc == 0 else f"FAILED exit {sample.rc}"
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
        sample.phases["events"] = log_events(err, start)
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
        pair = ["b"] if profile else rotate(["a", "a7", "a7i", "b"], index)
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
            # Metabase's questions on the views the build made (view mode)
            for scenario, sql in BI_QUESTIONS.items():
                step(self.question(scenario, round_, atlas, sql))
            # the scheduled job right after: nothing changed, so it does no dbt work
            sample = step(self.product("cr", round_, atlas, [], profile=profile))
            built = pg_query(
                atlas,
                f'SELECT build_status FROM "{REPLICA}".sync_runs ORDER BY started_at DESC LIMIT 1',
            )
            if built != [("unchanged",)]:
                sample.notes.append(f"expected no dbt build, the audit says {built}")

        group = {"c": run_c, "e": run_e, "fv": run_fv}
        order = rotate(["c", "e", "fv"], index)
        log(f"round {round_}: then {' '.join(order)}, then d c2 fi0 fi1 fis fi s m")
        for s in order:
            group[s]()
        self.apply_d()
        step(self.product("d", round_, atlas, ["sync"], profile=profile))
        step(self.product("c2", round_, atlas, ["sync"], profile=profile))
        incr = {"ATLAS_TIMESHEET_FACTS_MATERIALIZATION": "table_incremental"}
        step(self.product("fi0", round_, atlas, ["transform"], incr, profile=profile))
        # builds alternate between two copies (the live and the shadow schemas): the second
        # build fills the other copy, so that (fi) measures an incremental refresh (a smoke
        # run times nothing: its (fi) builds the second copy whole)
        if not self.args.smoke:
            step(self.product("fi1", round_, atlas, ["transform"], incr, profile=profile))
        self.apply_updates(self.sets["facts"], "facts edit")
        step(self.product("fis", round_, atlas, ["sync"], profile=profile))
        step(self.product("fi", round_, atlas, ["transform"], incr, profile=profile))
        # change sets too big to hold in memory: they stream (peak RSS is the check)
        sample = step(self.product("s", round_, atlas, ["sync", "--since", "2000-01-01"]))
        sample.rows = n
        self.bump_all()
        sample = step(self.product("m", round_, atlas, ["sync"], profile=profile))
        sample.rows = n
        self.unbump_all()
        self.restore_kimai()
        self.drop_atlas(atlas)

    # -- Kimai impact ------------------------------------------------------------------------------

    def capture(self, atlas: str, args: list[str], name: str) -> dict[str, Any]:
        """Run one product command with every statement it sends to Kimai recorded."""
        path = self.work / f"capture-{name}.json"
        cmd = [sys.executable, str(REPO / "scripts" / "bench.py"), "--capture-sql", str(path), "--",
               *args, "--log-format", "json", "--trigger", "manual"]  # fmt: skip
        sample = self.measure(f"capture-{name}", "impact", cmd, env=self.product_env(atlas))
        statements = json.loads(path.read_text()) if path.exists() else []
        return {"sample": asdict(sample), "statements": statements}

    def replay(self, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Execute the captured SELECTs one by one, measuring each in MariaDB's session status."""
        import pymysql

        conn = mariadb_connect(self.kimai_db, cursorclass=pymysql.cursors.SSCursor)
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
        conn = mariadb_connect(self.kimai_db)
        try:
            with conn.cursor() as cur:
                cur.execute(f"ANALYZE FORMAT=JSON {sql}")
                doc = json.loads(cur.fetchall()[0][0])
        finally:
            conn.close()
        return {"tables": plan_summary(doc), "json": doc}

    def has_index(self) -> bool:
        """Whether Kimai's timesheets have the optional modified_at index now."""
        return bool(
            self.maria.one(
                "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = %s"
                " AND table_name = %s AND index_name = 'IDX_ATLAS_SYNC_MODIFIED_AT'",
                (self.kimai_db, TS),
            )
        )

    def set_index(self, on: bool) -> float:
        t0 = time.perf_counter()
        exists = self.has_index()
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
            f"[client]\nuser={self.user}\npassword={self.password}\nhost=127.0.0.1\nport={MARIADB['port']}\n"
            "protocol=TCP\ndefault-character-set=utf8mb4\n"
        )
        os.chmod(self.work / "bench-client.cnf", 0o600)
        self.build_kimai()
        if self.args.kimai_index:
            seconds = self.set_index(True)
            log(f"created IDX_ATLAS_SYNC_MODIFIED_AT in {seconds:.1f} s (--kimai-index)")
        self.choose_change_sets()
        pg_create(self.raw_db)
        self.pg_dbs.append(self.raw_db)
        self.meta["machine"] = machine(self.maria)
        self.meta["code_start"] = code_version()
        only_studies = self.args.follow_only or self.args.delta_only
        if not (self.args.impact_only or only_studies):
            for i in range(self.args.rounds):
                self.run_round(i)
                self.write_report()
            if self.args.profile:
                log("profiling pass (pyinstrument; not part of the figures)")
                self.run_round(0, profile=True)
        if self.args.impact and not only_studies:
            self.run_impact()
        if self.args.follow > 0:
            self.follow = follow_study(self, self.args.follow, self.args.follow_interval)
        if self.args.delta_builds > 0:
            self.delta = delta_study(self, self.args.delta_builds)
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
            "follow": self.follow,
            "delta": self.delta,
        }
        self.out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
        self.out.write_text(render_report(data))
        log(f"report written to {self.out}")
