"""``pip install ./clients/python`` works (no dependencies; setuptools is the only build requirement)
and installs the typed package (``py.typed``)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]


class PackagingTest(unittest.TestCase):
    def test_pip_install(self) -> None:
        with tempfile.TemporaryDirectory(prefix="holdfast-pip-") as tmp:
            # A copy, so the build leaves nothing in the checkout.
            copy = Path(tmp) / "holdfast-python"
            shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
            target = Path(tmp) / "site"
            # PIP_RETRIES=0: an index that can't be reached (an offline machine with a local mirror) is
            # given up at once instead of retried five times; the build requirement comes from the others.
            pip = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--target", str(target), str(copy)],
                capture_output=True, text=True, timeout=280, env={**os.environ, "PIP_RETRIES": "0"},
            )
            self.assertEqual(pip.returncode, 0, pip.stdout + pip.stderr)
            self.assertTrue((target / "holdfast" / "py.typed").is_file())
            env = {**os.environ, "PYTHONPATH": str(target)}
            check = subprocess.run(
                [sys.executable, "-c", "import holdfast; print(holdfast.__file__); print(holdfast.__version__); print(holdfast.Client)"],
                capture_output=True, text=True, timeout=60, env=env, cwd=tmp,
            )
            self.assertEqual(check.returncode, 0, check.stderr)
            where, version, _ = check.stdout.splitlines()
            self.assertTrue(where.startswith(str(target)), where)
            self.assertEqual(version, "0.1.0")


if __name__ == "__main__":
    unittest.main()
