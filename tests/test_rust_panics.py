"""The command line's stderr loses Rust's panic blocks and nothing else."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.rust_panics import PanicFilter

pytestmark = pytest.mark.unit

# what connectorx's writer thread printed when MariaDB restarted mid-read
PANIC = (
    b"thread '<unnamed>' (15774) panicked at /__w/connector-x/connector-x/connectorx/src/"
    b"arrow_batch_iter.rs:162:39:\n"
    b"cx writer failed: Source(MySQLError(IoError { server disconnected }))\n"
    b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
)


def test_a_panic_block_is_dropped_and_the_lines_around_it_kept() -> None:
    lines = [b"2026-12-07 WARNING Kimai dropped the connection; retry 1 of 3\n"]
    lines += PANIC.splitlines(keepends=True)
    lines += [b"error: reading kimai2_timesheet failed: server disconnected\n"]
    panics = PanicFilter()
    assert [line for line in lines if panics.passes(line)] == [lines[0], lines[-1]]


def test_a_line_that_only_mentions_a_panic_passes() -> None:
    panics = PanicFilter()
    assert panics.passes(b"error: the thread 'x' panicked at startup\n")
    assert panics.passes(b"note: run with `RUST_BACKTRACE=1` is how Rust says it\n")


def test_descriptor_2_is_filtered_and_python_writes_to_the_real_stderr() -> None:
    script = (
        "import os, sys\n"
        "from pipelines.rust_panics import install\n"
        "install()\n"
        "print('python line', file=sys.stderr)\n"
        f"os.write(2, b'before\\n' + {PANIC!r} + b'after')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0
    assert done.stderr.decode().splitlines() == ["python line", "before", "after"]


def test_a_fatal_signal_still_dumps_every_thread_to_the_real_stderr() -> None:
    # faulthandler writes as the process dies: through the filter thread it would be lost
    script = (
        "import os, signal\n"
        "from pipelines.rust_panics import install\n"
        "install()\n"
        "os.kill(os.getpid(), signal.SIGABRT)\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, timeout=60
    )
    assert done.returncode == -6  # SIGABRT
    assert "Fatal Python error: Aborted" in done.stderr.decode()
    assert "in _pump" in done.stderr.decode()  # the filter thread's stack too
