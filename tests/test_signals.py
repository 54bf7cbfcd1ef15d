"""SIGTERM in the middle of an atomic write leaves nothing behind: neither the file nor its hidden temporary."""

import signal
import subprocess
import sys

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
