"""The package type-checks: strict on the codec (setup.cfg ``[mypy-wslocust.codec.*]``), typed signatures elsewhere."""

import subprocess
import sys

from helpers import REPO_ROOT


def test_mypy_finds_no_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "wslocust"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
