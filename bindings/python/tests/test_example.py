"""The example in examples/python-script runs and prints what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "python-script" / "chat.py"


@pytest.mark.skipif(not EXAMPLE.exists(), reason="not in a clone of the repository")
def test_example_script(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), f"sqlite://{tmp_path / 'example.db'}"],
        capture_output=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "event new-message     #1 1: Hello teacher" in out.stdout
    assert "#2 18: Homework is due Friday 👍" in out.stdout
    assert "as expected:" in out.stdout
