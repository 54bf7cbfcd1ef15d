"""SIGTERM in the middle of an atomic write leaves nothing behind: neither the file nor its hidden temporary."""

import os
import signal
import subprocess
import sys

import pytest

from cfzoo.files import write_atomically, write_folder_atomically

SCRIPT = """
import sys, time
from pathlib import Path
import cfzoo.cli
from cfzoo.files import write_atomically

def slow_write(temporary):
    temporary.write_bytes(b"half of it")
    print("writing", flush=True)
    time.sleep(60)

target = Path(sys.argv[-1])
cfzoo.cli.app.command("slow-write")(lambda: write_atomically(target, slow_write))
sys.argv = ["cfzoo", "slow-write"]
cfzoo.cli.main()
"""


def test_sigterm_during_an_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out" / "result.png"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "writing"
        assert [path.name for path in target.parent.iterdir()][0].endswith(".partial")  # the temporary exists now
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    assert list(target.parent.iterdir()) == []
    assert "Traceback" not in process.stderr.read()


KILLED_WRITER = """
import sys, time
from pathlib import Path
from cfzoo.files import write_atomically, write_folder_atomically

def slow(temporary):
    (temporary / "table.csv" if temporary.is_dir() else temporary).write_bytes(b"half of it")
    print("writing", flush=True)
    time.sleep(60)

target = Path(sys.argv[-1])
if sys.argv[-2] == "folder":
    write_folder_atomically(target, slow)
else:
    write_atomically(target, slow)
"""


def _kill_while_writing(target, kind: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, kind, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "writing"
    finally:
        process.kill()
        process.wait()


def test_what_a_killed_writer_left_hidden_is_removed_by_the_next_write_to_the_same_place(tmp_path):
    """SIGKILL cannot be caught, so a killed write leaves its hidden temporary; the next write to the same file or
    folder removes it (it names a process that no longer runs), and leaves a live writer's alone."""
    target = tmp_path / "out" / "result.png"
    _kill_while_writing(target, "file")
    [leftover] = list(target.parent.iterdir())
    assert leftover.name.startswith(".result.png.cfzoo-")
    alive = target.with_name(f".result.png.cfzoo-{os.getpid()}.live.partial")  # this process runs
    alive.write_bytes(b"another writer's")
    write_atomically(target, lambda temporary: temporary.write_bytes(b"whole"))
    assert sorted(path.name for path in target.parent.iterdir()) == sorted(["result.png", alive.name])

    report = tmp_path / "report"
    write_folder_atomically(report, lambda staging: (staging / "table.csv").write_text("first\n"))
    _kill_while_writing(report, "folder")
    assert len([path for path in tmp_path.iterdir() if path.name.startswith(".report.cfzoo-")]) == 1
    write_folder_atomically(report, lambda staging: (staging / "table.csv").write_text("second\n"))
    assert (report / "table.csv").read_text() == "second\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "report"]


def test_a_folder_a_killed_writer_had_moved_aside_comes_back(tmp_path):
    """Killed between moving the old folder aside and putting the new one in place: the next writer puts the old
    one back before it starts, so no report is lost even if the new one never completes."""
    report = tmp_path / "report"
    aside = tmp_path / ".report.cfzoo-999999999.replaced"  # a pid no process has
    aside.mkdir()
    (aside / "table.csv").write_text("old\n")
    with pytest.raises(RuntimeError):
        write_folder_atomically(report, lambda staging: (_ for _ in ()).throw(RuntimeError("the new one fails")))
    assert (report / "table.csv").read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report"]
