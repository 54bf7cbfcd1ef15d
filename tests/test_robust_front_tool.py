"""tools/robust_front.py: adversarial training runs of one task against the robust bar, from committed records."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "robust_front.py"
REPORTS = ROOT / "docs" / "robustness" / "reports"
STANDARD = ROOT / "checkpoints" / "cameras-seed0" / "bayar2016-median7.json"


def run(*arguments):
    return subprocess.run(
        [sys.executable, str(TOOL), "--standard", str(STANDARD), *arguments], capture_output=True, text=True, cwd=ROOT
    )


def test_each_run_is_placed_by_its_own_record_and_report_and_judged_against_the_bar(tmp_path):
    figure = tmp_path / "front.png"
    done = run(
        f"short={REPORTS / 'bayar2016-embedded-robust-hide.json'}@{ROOT / 'checkpoints' / 'robust-scratch-seed0'}",
        f"long={REPORTS / 'bayar2016-median7-robust-1800-hide.json'}@{ROOT / 'checkpoints' / 'robust-scratch-1800-seed0'}",
        "--figure",
        str(figure),
    )
    assert done.returncode == 0, done.stderr
    rows = {
        cells[0].strip(): [cell.strip() for cell in cells[1:]]
        for cells in (line.strip("|").split(" | ") for line in done.stdout.splitlines())
        if cells[0].strip() in ("short", "long")
    }
    standard_acc = json.loads(STANDARD.read_text())["metrics"]["test"]["acc"]
    for label, folder in (("short", "robust-scratch-seed0"), ("long", "robust-scratch-1800-seed0")):
        record = json.loads((ROOT / "checkpoints" / folder / "bayar2016-median7-robust.json").read_text())
        acc = record["metrics"]["test"]["acc"]
        assert rows[label][0] == f"{acc:.2f}" and rows[label][1] == f"{standard_acc - acc:.2f}"
        assert rows[label][-1] == "missed"  # neither is within 3 points with 50% left at eps 1
    assert float(rows["short"][3]) > float(rows["long"][3])  # worst case at eps 1: the longer run gave it up
    assert figure.stat().st_size > 10_000


def test_a_run_without_its_folder_and_a_framing_report_are_refused():
    missing_folder = run(f"x={REPORTS / 'bayar2016-embedded-robust-hide.json'}")
    assert missing_folder.returncode != 0 and "write each run as LABEL=REPORT@FOLDER" in missing_folder.stderr
    framing = run(f"x={REPORTS / 'bayar2016-median7-robust-1800-frame.json'}@{ROOT / 'checkpoints'}")
    assert framing.returncode != 0 and "a hiding report is needed" in framing.stderr
    assert "Traceback" not in missing_folder.stderr + framing.stderr
