"""Running the `rhode` command in the test process, as the CLI tests do."""

from __future__ import annotations

import contextlib
import io
import signal

from rhode import cli


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """``rhode ARGV`` in this process: (exit status, stdout, stderr). An exception that escapes the
    command's error path propagates (the test fails with its traceback)."""
    old = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.run(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.signal(signal.SIGTERM, old)
    return code, out.getvalue(), err.getvalue()
