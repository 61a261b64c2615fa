#!/usr/bin/env python3
r"""Benchmark of the Kimai → Atlas DB sync (issue 7), run through ``scripts/bench``.

One command builds a Kimai of N timesheets (the tests' generator) in a throw-away MariaDB
database and measures, in interleaved rounds (the order rotates every round):

  (a)  the reference raw pipe ``mariadb --batch --quick -e "SELECT <timesheet columns>" |
       psql -c "\copy … FROM STDIN"`` into a fresh, pre-created table;
  (a7) the same pipe for every replicated table (what (b) moves; informational);
  (a7i) (a7) followed by the product's own CREATE INDEX / PRIMARY KEY statements (the
       reference of (b), which builds them too);
  (b)  ``python -m pipelines.run sync`` into an empty Atlas DB (ratio to (a) per round);
  (c)  a no-change scheduled run (every table, delete detection included);
  (d)  a run after 10k updates (modified_at bumped) + 1k inserts + 1k deletes;
  (e)  ``reconcile`` with no differences and with 1k silent differences;
  (f)  ``transform`` (dbt build) in view mode, and the incremental facts refresh;
  (q)  Metabase-style questions on the views: this month's monthly budgets (qb), and
       utilization per user over the last full month (qu);
  (g)  with ``--follow SECONDS``: the follower running that long, edits saved in Kimai one
       at a time: edit → row in vw_timesheet_facts latency, tick times, Kimai's CPU share.
  (h)  with ``--delta-builds N``: N scheduled runs after 10k updates each, per facts
       materialization: the delta builds' dbt work (benchlib/delta.py).

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
import json
import signal
import sys
from pathlib import Path
from typing import Any

from benchlib.capture import capture_main
from benchlib.common import REPO, log
from benchlib.harness import Bench
from benchlib.report import render_report
from benchlib.servers import binlog_server

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
                   help="quick run of every scenario for CI: 20k timesheets, 1 round, "
                        "no (fi1), the Kimai-impact study without its index A/B")  # fmt: skip
    p.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    p.add_argument("--no-impact", dest="impact", action="store_false",
                   help="skip the Kimai-impact study (statements, EXPLAIN, index A/B)")  # fmt: skip
    p.add_argument("--impact-only", action="store_true",
                   help="only the Kimai-impact study (e.g. at --timesheets 5000000)")  # fmt: skip
    p.add_argument("--ab-pairs", type=int, default=None,
                   help="index A/B pairs in the impact study (default: --rounds; "
                        "0 with --smoke)")  # fmt: skip
    p.add_argument("--profile", action="store_true",
                   help="an extra, untimed round under pyinstrument (profiles-*/)")  # fmt: skip
    p.add_argument("--buffer-pool-mib", type=int, default=None,
                   help="raise innodb_buffer_pool_size to this at runtime, restored at the end "
                        "(default 1024; 0 = leave it)")  # fmt: skip
    p.add_argument("--kimai-database", default=None,
                   help="reuse a Kimai database an earlier --keep run built")  # fmt: skip
    p.add_argument("--follow", type=float, default=0, metavar="SECONDS",
                   help="also run the follower study this long: edit-to-BI latency, tick"
                        " times, Kimai CPU (default 0: none)")  # fmt: skip
    p.add_argument("--follow-interval", type=float, default=30, metavar="SECONDS",
                   help="the follower's ATLAS_FOLLOW_INTERVAL_SECONDS in that study")  # fmt: skip
    p.add_argument("--follow-only", action="store_true",
                   help="only the follower study (needs --follow)")  # fmt: skip
    p.add_argument("--follow-no-build", action="store_true",
                   help="that study's follower runs with --no-build")  # fmt: skip
    p.add_argument("--delta-builds", type=int, default=0, metavar="N",
                   help="also run the delta-build study: N scheduled runs after 10k updates,"
                   " per facts materialization")  # fmt: skip
    p.add_argument("--delta-only", action="store_true",
                   help="only the delta-build study (needs --delta-builds)")  # fmt: skip
    p.add_argument("--binlog", action="store_true",
                   help="Kimai on a MariaDB of the benchmark's own that keeps a ROW binlog; the"
                        " follower study reads it (KIMAI_BINLOG=on)")  # fmt: skip
    p.add_argument("--kimai-index", action="store_true",
                   help="create the modified_at index of docs/kimai-index.md before the studies"
                        " (the follower asks for it above 1M timesheets)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=1800, help="per command, seconds")
    args = p.parse_args(argv)
    if args.smoke:
        if "--timesheets" not in argv:
            args.timesheets = 20_000
        if "--rounds" not in argv:
            args.rounds = 1
        if args.ab_pairs is None:
            # six more product runs that only time the index: nothing a smoke run checks
            args.ab_pairs = 0
        if args.buffer_pool_mib is None:
            args.buffer_pool_mib = 0
    if args.buffer_pool_mib is None:
        args.buffer_pool_mib = 1024
    if args.ab_pairs is None:
        args.ab_pairs = args.rounds
    if args.impact_only:
        args.impact = True
    if args.follow_only and args.follow <= 0:
        p.error("--follow-only needs --follow SECONDS")
    if args.delta_only and args.delta_builds <= 0:
        p.error("--delta-only needs --delta-builds N")
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
    with contextlib.ExitStack() as stack:
        if args.binlog:
            stack.enter_context(binlog_server(args.buffer_pool_mib))
        return _bench(args)


def _bench(args: argparse.Namespace) -> int:
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
