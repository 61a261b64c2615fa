"""A failed connection of connectorx's pool prints nothing of its own: the run says it once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.unit

READ = """
import sys
{get}
try:
    cx.read_sql("mysql://root@127.0.0.1:{port}/kimai", "select 1", return_type="arrow")
except Exception:
    pass
"""


def _stderr_of_a_refused_read(get: str) -> str:
    """stderr of a process whose connectorx read meets a refused connection, after 3 s."""
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    proc = subprocess.Popen(
        [sys.executable, "-c", READ.format(get=get, port=free_port())],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # the pool retries for 30 s; its first failed attempt is logged at once
        return proc.communicate(timeout=3)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


def test_the_pool_retries_are_not_printed() -> None:
    quiet = _stderr_of_a_refused_read(
        "from pipelines.adapters.kimai import connectorx\ncx = connectorx()"
    )
    assert "r2d2" not in quiet and "Connection refused" not in quiet, quiet
    # the same read with connectorx imported as it comes prints the pool's errors
    loud = _stderr_of_a_refused_read("import connectorx as cx")
    assert "ERROR r2d2" in loud, loud
