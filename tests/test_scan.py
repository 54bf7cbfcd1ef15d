"""cfzoo scan: rows per image x detector in Parquet parts, bad inputs as rows, --resume after a kill, and the Ray
engine on a real two-node Ray cluster on 127.0.0.1 (one CPU per node) giving the local engine's rows."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow
import pyarrow.parquet as parquet
import pytest
from PIL import Image
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.engines.parts import read_rows
from cfzoo.engines.scan import ScanSettings, run_scan
from cfzoo.images import save_png
from cfzoo.ops.detect import detect_image
from cfzoo.ops.scan import scan_inputs
from cfzoo.patches import DEFAULT_STRIDE
from cfzoo.results import ScanRow
from cfzoo.zoo.catalog import select_detectors

SELECTION = ["-f", "spam", "-t", "jpeg70", "-t", "median3"]
runner = CliRunner()
RAY = Path(sys.executable).parent / "ray"


def _cfzoo(*args, **options):
    return subprocess.run(
        [sys.executable, "-m", "cfzoo", *args], capture_output=True, text=True, timeout=600, **options
    )


def _sorted(rows):
    return sorted(rows, key=lambda row: (row["path"], row["model"]))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_root):
    """The sample photos in nested folders, one corrupt JPEG and one image too small to scan."""
    root = tmp_path_factory.mktemp("photos")
    shutil.copytree(sample_root, root / "cameras")
    (root / "cameras" / "skimage_gray" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    save_png(np.zeros((64, 64, 3), dtype=np.uint8), root / "cameras" / "tiny.png")
    return root / "cameras"


@pytest.fixture(scope="module")
def local_rows(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "results.parquet"
    done = _cfzoo("scan", str(photos), "--out", str(out), *SELECTION, "--images-per-part", "4", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), read_rows(out)


def test_a_scan_has_a_row_per_image_and_detector_and_bad_images_are_rows(local_rows, photos, conforms):
    summary, rows = local_rows
    conforms(summary, "scan")
    for row in rows:
        conforms(ScanRow.model_validate(row).to_json(), "scan-row")  # its JSON form: path_bytes in base64
        assert row["path_bytes"] == os.fsencode(row["path"])
    images = scan_inputs([photos])
    assert summary["images"] == len(images) == 16 and summary["failed_images"] == 2
    assert len(rows) == 2 * len(images) and len({(row["path"], row["model"]) for row in rows}) == len(rows)
    failed = {Path(row["path"]).name: row["error"] for row in rows if row["error"]}
    assert set(failed) == {"broken.jpg", "tiny.png"}
    assert "64x64 pixels, smaller than one 128x128 patch" in failed["tiny.png"]
    # the scores are cfzoo detect's
    detectors = select_detectors(["spam"], ["jpeg70", "median3"], "cpu").detectors
    for row in rows[:6]:
        if row["error"] is None:
            verdicts = {verdict.model: verdict for verdict in detect_image(row["path"], detectors).results}
            assert row["flagged_share"] == verdicts[row["model"]].flagged_share
            assert row["verdict"] == verdicts[row["model"]].verdict
    assert all(len(row["sha256"]) == 64 and len(row["model_sha256"]) == 64 for row in rows)


def test_inputs_are_folders_globs_and_manifests(photos, tmp_path):
    every = scan_inputs([photos])
    assert scan_inputs([f"{photos}/**/*.png"]) == [path for path in every if path.suffix == ".png"]
    manifest = tmp_path / "list.txt"
    manifest.write_text("# two photos\n" + "\n".join(str(path) for path in every[:2]) + "\n")
    assert scan_inputs([manifest]) == every[:2]
    table = tmp_path / "list.parquet"
    parquet.write_table(pyarrow.table({"path": [str(path) for path in every[2:5]]}), table)
    assert scan_inputs([table, manifest]) == every[2:5] + every[:2]


def test_a_killed_scan_resumes_to_exactly_the_rows_of_an_uninterrupted_one(photos, local_rows, tmp_path):
    out = tmp_path / "results.parquet"
    command = [
        sys.executable,
        "-m",
        "cfzoo",
        "scan",
        str(photos),
        "--out",
        str(out),
        *SELECTION,
        "--images-per-part",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(out.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    parts_before = len(list(out.glob("part-*.parquet")))
    assert 3 <= parts_before < 16
    refused = _cfzoo("scan", str(photos), "--out", str(out), *SELECTION)
    assert refused.returncode != 0 and "add --resume to finish it" in refused.stderr
    resumed = _cfzoo("scan", str(photos), "--out", str(out), *SELECTION, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["scanned"] == 16 - parts_before
    assert _sorted(read_rows(out)) == _sorted(local_rows[1])
    again = _cfzoo("scan", str(photos), "--out", str(out), *SELECTION, "--resume", "--json")
    assert json.loads(again.stdout)["rows_written"] == 0


def test_the_ray_engine_in_the_library_starts_ray_here_without_an_address(photos, local_rows, tmp_path, monkeypatch):
    """Relative inputs too: the actors work in the driver's folder, so rows and errors read as the local engine's."""
    monkeypatch.chdir(photos.parent)
    settings = ScanSettings(("spam",), ("jpeg70", "median3"), images_per_part=8)
    summary = run_scan(scan_inputs([photos.name]), tmp_path / "here.parquet", settings, engine="ray", workers=1)
    assert summary.rows_written == len(local_rows[1])
    rows = read_rows(tmp_path / "here.parquet")
    assert all(not Path(row["path"]).is_absolute() for row in rows)
    as_given = [
        {
            **row,
            "path": str(photos.parent / row["path"]),
            "path_bytes": os.fsencode(photos.parent / row["path"]),
            "error": row["error"] and row["error"].replace(row["path"], str(photos.parent / row["path"])),
        }
        for row in rows
    ]
    assert _sorted(as_given) == _sorted(local_rows[1])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head and a second node on 127.0.0.1, one CPU each, with a token for this test alone (Ray's token
    authentication), stopped at the end: (address, the environment that reaches it)."""
    port = _free_port()
    environment = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    temp = tmp_path_factory.mktemp("ray")
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    head = subprocess.run(
        [
            str(RAY),
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--include-dashboard",
            "false",
            "--temp-dir",
            str(temp),
            *common,
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
    )
    assert head.returncode == 0, head.stderr
    address = f"127.0.0.1:{port}"
    try:
        node = subprocess.run(
            [str(RAY), "start", "--address", address, "--node-ip-address", "127.0.0.1", *common],
            capture_output=True,
            text=True,
            env=environment,
            timeout=180,
        )
        assert node.returncode == 0, node.stderr
        yield address, environment
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)


def test_a_ray_scan_on_two_nodes_gives_the_local_rows_and_survives_a_killed_worker(
    ray_cluster, photos, local_rows, tmp_path
):
    address, environment = ray_cluster
    out = tmp_path / "ray.parquet"
    command = [
        sys.executable,
        "-m",
        "cfzoo",
        "scan",
        str(photos),
        "--out",
        str(out),
        *SELECTION,
        "--engine",
        "ray",
        "--address",
        address,
        "--workers",
        "2",
        "--images-per-part",
        "1",
        "--json",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    killed = subprocess.run(["pkill", "-9", "-f", "MapBatches\\(_ScanWorker\\)"], capture_output=True)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert killed.returncode == 0  # a worker was there to kill, in the middle of the scan
    assert json.loads(stdout)["scanned"] == 16
    rows = read_rows(out)
    assert len(rows) == len(local_rows[1])  # nothing lost, nothing written twice
    assert _sorted(rows) == _sorted(local_rows[1])


NO_RAY_SCAN = """
import sys

class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("ray is blocked")

sys.meta_path.insert(0, NoRay())
from cfzoo.cli import main
sys.argv = ["cfzoo", *sys.argv[1:]]
main()
"""


def test_the_runtime_install_has_no_ray_and_a_local_scan_needs_none(photos, tmp_path):
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["cpu"]:
        assert not requirement.startswith("ray"), requirement
    assert any(requirement.startswith("ray[data]") for requirement in project["optional-dependencies"]["scale"])
    local = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_RAY_SCAN,
            "scan",
            str(photos / "skimage_gray"),
            "--out",
            str(tmp_path / "a.parquet"),
            "-f",
            "spam",
            "-t",
            "jpeg70",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr
    refused = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_RAY_SCAN,
            "scan",
            str(photos / "skimage_gray"),
            "--out",
            str(tmp_path / "b.parquet"),
            "--engine",
            "ray",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == 'error: --engine ray needs Ray: pip install "cfzoo[scale]"'
    assert not (tmp_path / "b.parquet").exists()


def test_scan_options_that_cannot_work_are_refused_in_one_line(photos, tmp_path):
    (tmp_path / "file.parquet").write_text("not a folder")
    for arguments, message in (
        (["--out", str(tmp_path / "file.parquet")], "is a file; give a folder for the Parquet parts"),
        (["--out", str(tmp_path / "x"), "--address", "127.0.0.1:1"], "--address joins a Ray cluster; add --engine ray"),
        (["--out", str(tmp_path / "x"), "--engine", "spark"], "unknown --engine 'spark'"),
        (["--out", str(tmp_path / "x"), "-f", "nosuch"], "unknown"),
    ):
        done = _cfzoo("scan", str(photos / "skimage_gray"), *arguments)
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    missing = _cfzoo("scan", str(tmp_path / "nothing-*.png"), "--out", str(tmp_path / "y"))
    assert missing.returncode != 0 and "the pattern matches no file" in missing.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["scan", "IMAGE", "--out", "OUT"],
        ["robustness", "-T", "spam", "-t", "jpeg70", "--out", "OUT"],
        ["reproduce", "--out", "OUT"],
        ["bench", "spam-jpeg70", "--out", "OUT"],
    ],
)
def test_a_ray_address_nobody_listens_on_fails_in_one_line_within_seconds(photos, tmp_path, command):
    image = next(path for path in scan_inputs([photos]) if path.suffix == ".png")
    out = tmp_path / "out"
    arguments = [str(image) if word == "IMAGE" else str(out) if word == "OUT" else word for word in command]
    started = time.perf_counter()
    result = CliRunner().invoke(app, [*arguments, "--engine", "ray", "--address", f"127.0.0.1:{_free_port()}"])
    assert result.exit_code == 1 and time.perf_counter() - started < 30
    assert result.output.startswith("error: nothing answers at 127.0.0.1:") and "Traceback" not in result.output
    assert not out.exists()  # refused before anything was written


def _scan(*arguments):
    return runner.invoke(app, ["scan", *arguments, "-f", "spam", "-t", "jpeg70"])


@pytest.fixture
def two_photos(photos, tmp_path):
    """Two gray sample photos (reading notes that they are replicated to RGB) in a folder of their own."""
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("camera.png", "moon.png"):
        shutil.copy(photos / "skimage_gray" / name, folder / name)
    return folder


def test_a_scan_folder_holds_only_its_own_parts_and_one_row_per_file_and_model(two_photos, tmp_path):
    out = tmp_path / "out.parquet"
    first = _scan(str(two_photos), "--out", str(out), "--json")
    assert first.exit_code == 0, first.output
    rows = read_rows(out)
    detected = detect_image(two_photos / "camera.png", select_detectors(["spam"], ["jpeg70"], "cpu").detectors)
    assert [row["notes"] for row in rows if row["path"].endswith("camera.png")] == [detected.notes]
    assert detected.notes and "replicated to RGB" in detected.notes[0]

    # a new model gets its rows on --resume; the old model's are not written again (the key holds the model)
    wider = runner.invoke(
        app, ["scan", str(two_photos), "--out", str(out), "-f", "spam", "-t", "jpeg70", "-t", "median3", "--resume"]
    )
    assert wider.exit_code == 0, wider.output
    rows = read_rows(out)
    assert sorted((Path(row["path"]).name, row["task"]) for row in rows) == [
        ("camera.png", "jpeg70"),
        ("camera.png", "median3"),
        ("moon.png", "jpeg70"),
        ("moon.png", "median3"),
    ]

    # a file changed since: its old rows go (every model's: they describe other bytes) and this run's models write
    # new ones, so no path holds two contradicting rows; a killed writer's hidden leftovers are removed
    moon = two_photos / "moon.png"
    old_sha = next(row["sha256"] for row in rows if row["path"].endswith("moon.png"))
    save_png(np.asarray(Image.open(moon).convert("RGB"))[:, ::-1], moon)
    (out / ".part-000009-deadbeef.parquet.abc.partial").write_bytes(b"half a part")
    again = _scan(str(two_photos), "--out", str(out), "--resume", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["scanned"] == 1
    rows = read_rows(out)
    moon_rows = [row for row in rows if row["path"].endswith("moon.png")]
    assert len({(row["path"], row["model"]) for row in rows}) == len(rows) == 3
    assert [(row["task"], row["sha256"] != old_sha) for row in moon_rows] == [("jpeg70", True)]
    assert not list(out.glob(".*.partial"))

    # parts of another stride, or not a scan's at all, are refused by name, before any work
    other_stride = _scan(str(two_photos), "--out", str(out), "--resume", "--stride", "32")
    expected = f"was written with stride {DEFAULT_STRIDE} (this scan: 32)"
    assert other_stride.exit_code == 1 and expected in other_stride.output
    foreign = out / "part-000099-foreign.parquet"
    parquet.write_table(pyarrow.table({"path": ["x.png"], "score": [0.5]}), foreign)
    refused = _scan(str(two_photos), "--out", str(out), "--resume")
    assert refused.exit_code == 1 and f"{foreign} is not a part of a cfzoo scan" in refused.output
    assert "Traceback" not in refused.output and len(read_rows_except(out, foreign)) == 3


def read_rows_except(out: Path, part: Path) -> list[dict]:
    part.unlink()
    return read_rows(out)


def test_a_second_scan_into_a_folder_being_written_is_refused(photos, tmp_path):
    out = tmp_path / "busy.parquet"
    command = [sys.executable, "-m", "cfzoo", "scan", str(photos), "--out", str(out), *SELECTION]
    first = subprocess.Popen([*command, "--images-per-part", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    second = _cfzoo(*command[3:], "--resume")
    assert first.wait(timeout=600) == 0
    assert second.returncode == 1 and f"another cfzoo scan is writing into {out}" in second.stderr
    rows = read_rows(out)
    assert len(rows) == 2 * len(scan_inputs([photos])) == len({(row["path"], row["model"]) for row in rows})


def test_a_pipe_among_the_inputs_is_a_row_with_an_error_and_a_read_only_out_is_refused_first(two_photos, tmp_path):
    fifo = tmp_path / "stream.png"
    os.mkfifo(fifo)
    done = _cfzoo(
        "scan",
        str(fifo),
        str(two_photos / "camera.png"),
        "--out",
        str(tmp_path / "o"),
        "-f",
        "spam",
        "-t",
        "jpeg70",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    [piped] = [row for row in read_rows(tmp_path / "o") if row["path"] == str(fifo)]
    assert "not a regular file" in piped["error"] and piped["sha256"] is None
    started = time.monotonic()
    readonly = _scan(str(two_photos), "--out", "/proc/cfzoo-scan-out")
    assert readonly.exit_code == 1 and "--out /proc/cfzoo-scan-out" in readonly.output
    assert time.monotonic() - started < 5  # before the detectors load
