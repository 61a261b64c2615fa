"""Keep the Rust readers' panic text off the command line's stderr.

connectorx reads Kimai on a Rust thread; when the server drops the connection mid-read,
that thread panics and Rust's panic hook prints ``thread '…' panicked at …`` and a note
straight to file descriptor 2, outside Python. The run then fails with its own one-line
error (exit 4), so the panic text is noise in front of it. No setting of Rust or connectorx
silences the hook (``RUST_BACKTRACE`` only drops the backtrace), so descriptor 2 goes through
a filter thread that drops panic blocks and passes every other byte on, while Python's own
``sys.stderr`` keeps writing to the real stderr (a terminal stays a terminal).
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import re
import sys
import threading
from collections.abc import Callable

PANIC = re.compile(rb"^thread '[^']*'( \(\d+\))? panicked at ")
NOTE = b"note: run with `RUST_BACKTRACE=1`"


class PanicFilter:
    """Tells, line by line, whether a stderr line is outside every Rust panic block.

    A block runs from its ``panicked at`` line to the note Rust prints after the message.
    """

    def __init__(self) -> None:
        self.inside = False

    def passes(self, line: bytes) -> bool:
        """Whether `line` goes on to stderr."""
        if PANIC.match(line):
            self.inside = True
        if not self.inside:
            return True
        self.inside = not line.startswith(NOTE)
        return False


_restore: Callable[[], None] | None = None


def install() -> Callable[[], None]:
    """Route descriptor 2 through the filter; returns what restores it (also run at exit).

    Once per process: a second call returns the first one's `restore`.
    """
    global _restore
    if _restore is not None:
        return _restore
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr = open(real, "w", buffering=1, encoding=encoding, errors="backslashreplace")  # noqa: SIM115
    if faulthandler.is_enabled():
        # a fatal signal's tracebacks: written as the process dies, so never to the pump
        faulthandler.enable(file=sys.stderr, all_threads=True)
    pump = threading.Thread(target=_pump, args=(read_end, real), name="stderr", daemon=True)
    pump.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last write end closes: the pump reads to its end
        pump.join(timeout=2)

    atexit.register(restore)
    _restore = restore
    return restore


def _pump(read_end: int, real: int) -> None:
    panics = PanicFilter()
    with open(read_end, "rb") as source:
        for line in iter(source.readline, b""):
            if panics.passes(line):
                os.write(real, line)
