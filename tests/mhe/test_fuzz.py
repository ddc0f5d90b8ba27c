"""Corrupted and truncated bytes never crash the interpreter: every deserializer raises a rhode error.

The fuzzing runs in a child process so that a crash inside OpenFHE (a segfault would kill pytest)
shows up as a failed exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).parent / "_fuzz_child.py"
DESERIALIZERS = 11


def _run(n: int, seed: int, mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(CHILD), str(n), str(seed), mode],
                          capture_output=True, text=True, timeout=600, env=env)


def test_corrupted_or_truncated_frames_are_rejected():
    proc = _run(200, 2024, "frame")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count(": 200 cases") == DESERIALIZERS


@pytest.mark.slow
def test_damaged_payload_behind_a_valid_frame_does_not_crash():
    """A faulty peer can compute a valid digest around garbage: OpenFHE then parses it. It must
    still end in a rhode error or a well-formed object, never a crash or a foreign exception."""
    proc = _run(20, 99, "payload")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count(": 20 cases") == DESERIALIZERS
