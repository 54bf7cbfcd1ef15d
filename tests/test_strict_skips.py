"""The strict skip gate (strict_skips.py) fails a run that skips, in a separate pytest process."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def run_pytest(folder: Path, allow: str | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "CFZOO_ALLOW_SKIPS"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environment.get("PYTHONPATH")]))
    if allow is not None:
        environment["CFZOO_ALLOW_SKIPS"] = allow
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "strict_skips", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=folder,
        timeout=120,
    )


def test_a_skip_for_a_missing_module_fails_the_run(tmp_path):
    (tmp_path / "test_needs.py").write_text(
        "import pytest\n\n"
        "def test_passes():\n    assert True\n\n"
        "def test_needs_a_module():\n    pytest.importorskip('cfzoo_no_such_module')\n"
    )
    (tmp_path / "test_module_level.py").write_text("import pytest\n\npytest.importorskip('olah_no_such_module')\n")
    strict = run_pytest(tmp_path)
    assert strict.returncode == 1, strict.stdout
    assert "1 passed, 2 skipped" in strict.stdout and "2 skipped, which fails the run" in strict.stdout
    assert "test_needs.py::test_needs_a_module: Skipped: could not import 'cfzoo_no_such_module'" in strict.stdout
    assert "olah_no_such_module" in strict.stdout
    assert run_pytest(tmp_path, allow="1").returncode == 0
    assert run_pytest(tmp_path, allow="0").returncode == 1


def test_a_run_without_skips_passes_and_failures_stay_failures(tmp_path):
    (tmp_path / "test_fine.py").write_text(
        "import pytest\n\n@pytest.mark.xfail\ndef test_known():\n    assert False\n\ndef test_ok():\n    pass\n"
    )
    clean = run_pytest(tmp_path)
    assert clean.returncode == 0 and "strict skip gate" not in clean.stdout, clean.stdout
    (tmp_path / "test_fine.py").write_text("def test_broken():\n    assert False\n")
    assert run_pytest(tmp_path).returncode == 1
