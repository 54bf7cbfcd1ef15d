"""An input this user may not read is one failed input among others, never a usage error that stops the run.

Root reads every file, so as root the child process gives up the two capabilities that let it
(CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH): file modes then bind it like any other user.
"""

import ctypes
import os
import subprocess
import sys

from cfzoo.images import save_png

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _obey_file_modes() -> None:
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _cfzoo(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "cfzoo", *args],
        cwd=cwd,
        preexec_fn=_obey_file_modes,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unreadable_files_and_folders_fail_alone(tmp_path, photo):
    save_png(photo[:256, :256], tmp_path / "readable.png")
    save_png(photo[:256, :256], tmp_path / "secret.png")
    (tmp_path / "locked").mkdir()
    save_png(photo[:256, :256], tmp_path / "locked" / "inside.png")
    (tmp_path / "secret.png").chmod(0)
    (tmp_path / "locked").chmod(0)
    try:
        result = _cfzoo(
            "detect", "-t", "jpeg70", "-f", "spam", "--json", "readable.png", "secret.png", "locked", cwd=tmp_path
        )
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: secret.png: permission denied; make the file readable for this user",
        "error: locked: folder cannot be listed (Permission denied); make it readable for this user",
    ]
    assert "2 of 3 inputs failed; the others were analysed" in result.stderr
    assert '"readable.png"' in result.stdout


def test_an_unreadable_image_to_attack_is_a_one_line_error(tmp_path, photo):
    save_png(photo[:256, :256], tmp_path / "secret.png")
    (tmp_path / "secret.png").chmod(0)
    result = _cfzoo("attack", "secret.png", "-T", "spam", "-t", "jpeg70", "--out", "attacked.png", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: secret.png: permission denied; make the file readable for this user"
    assert not (tmp_path / "attacked.png").exists()
