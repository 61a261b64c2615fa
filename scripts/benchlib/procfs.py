"""Readings from /proc: CPU time of process trees, peak RSS, what else keeps the host busy."""

from __future__ import annotations

import contextlib
import os
import threading
import time

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
