"""`cfzoo pull` and `cfzoo publish` with the real huggingface_hub client against a real HF-protocol server.

The server is olah in offline mode, serving a local git repository (the `mirrors-path` of its config) as the
Hub model repo ``cfzoo-test/detectors`` on 127.0.0.1. The repo is laid out by cfzoo's own publisher from real
exported models: branch ``main`` holds them as published, branch ``tampered`` changes the bytes of one file
without touching ``registry.json``. huggingface_hub reads HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE when it is
imported, so every pull runs the CLI in a subprocess with those set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cfzoo.cards.model_cards import zoo_card
from cfzoo.zoo.hub import plan_publication
from cfzoo.zoo.registry import embedded_registry, embedded_zoo_dir

REPO_ID = "cfzoo-test/detectors"
MODEL_IDS = ("spam-jpeg70", "cozzolino2017-jpeg70")
TAMPERED_FILE = "models/spam-jpeg70.onnx"
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints" / "cameras-seed0"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=cfzoo tests", "-c", "user.email=tests@cfzoo.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def source_zoo(tmp_path_factory) -> tuple[Path, bool]:
    """A zoo holding MODEL_IDS: the embedded one when the package ships them, else exported from checkpoints.

    Returns the zoo folder and whether cfzoo's own registry lists the models (then it supplies the checksums).
    """
    embedded = embedded_registry()
    if all(model_id in embedded and embedded.get(model_id).embedded for model_id in MODEL_IDS):
        return embedded_zoo_dir(), True
    pytest.importorskip("torch", reason="the embedded zoo lacks the models and exporting them needs the train extra")
    if not all((CHECKPOINTS / f"{model_id}.safetensors").exists() for model_id in MODEL_IDS):
        pytest.skip(f"the embedded zoo lacks {', '.join(MODEL_IDS)} and {CHECKPOINTS} holds no checkpoints for them")
    from cfzoo.families import export_to_zoo

    zoo = tmp_path_factory.mktemp("exported") / "zoo"
    export_to_zoo(CHECKPOINTS, list(MODEL_IDS), zoo)
    return zoo, False


@pytest.fixture(scope="module")
def served_repo(source_zoo, tmp_path_factory) -> dict:
    """The git repo olah serves: `main` as cfzoo publishes it, `tampered` with one file's bytes changed."""
    pytest.importorskip("olah", reason="olah (dev extra) serves the test Hub repo")
    if shutil.which("git") is None:
        pytest.skip("git is needed to build the served repo")
    mirrors = tmp_path_factory.mktemp("mirrors")
    repo = plan_publication(REPO_ID, source_zoo[0], MODEL_IDS, zoo_card=zoo_card).lay_out(mirrors / "models" / REPO_ID)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "publish")
    git(repo, "checkout", "-q", "-b", "tampered")
    tampered = repo / TAMPERED_FILE
    content = bytearray(tampered.read_bytes())
    content[-1] ^= 0xFF
    tampered.write_bytes(bytes(content))
    git(repo, "commit", "-q", "-am", "change the bytes of one model file")
    git(repo, "checkout", "-q", "main")
    return {"mirrors": mirrors, "repo": repo, "tampered_sha256": hashlib.sha256(content).hexdigest()}


@pytest.fixture(scope="module")
def hub_endpoint(served_repo, tmp_path_factory):
    """olah on a free 127.0.0.1 port, offline, serving the mirrors folder; stopped after the module."""
    work = tmp_path_factory.mktemp("olah")
    port = free_port()
    config = work / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'mirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        f'repos-path = "{work / "repos"}"\nmirrors-path = ["{served_repo["mirrors"]}"]\n'
        "[accessibility]\noffline = true\n"
    )
    log = (work / "olah.out").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "olah.server", "-c", str(config)],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OLAH_LOG_PATH": str(work / "logs")},
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/api/models/{REPO_ID}/revision/main", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"olah did not start: {(work / 'olah.out').read_text()[-2000:]}")
            time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def run_cfzoo(home: Path, endpoint: str, *args: str, **environment: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh process whose Hugging Face cache, cfzoo home and Hub endpoint are the test's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HF_")}
    env.update(
        HF_HOME=str(home / "hf"), CFZOO_HOME=str(home / "cfzoo"), HF_ENDPOINT=endpoint, HF_HUB_DISABLE_TELEMETRY="1"
    )
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "cfzoo", *args], check=False, capture_output=True, text=True, env=env, timeout=120
    )


def one_error_line(completed: subprocess.CompletedProcess) -> str:
    assert completed.returncode == 1, completed.stdout + completed.stderr
    lines = completed.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in completed.stderr, completed.stderr
    return errors[0]


def cache_files(home: Path) -> list[Path]:
    return [path for path in (home / "hf").rglob("*") if path.is_file() or path.is_symlink()]


def test_pull_verifies_files_into_the_cache_where_resolve_finds_them(hub_endpoint, served_repo, source_zoo, tmp_path):
    started = time.perf_counter()
    completed = run_cfzoo(
        tmp_path, hub_endpoint, "pull", *MODEL_IDS, "--repo-id", REPO_ID, "--revision", "main", "--json"
    )
    seconds = time.perf_counter() - started
    assert completed.returncode == 0, completed.stderr
    pulled = {model["id"]: model for model in json.loads(completed.stdout)}
    assert sorted(pulled) == sorted(MODEL_IDS)
    zoo, listed_by_cfzoo = source_zoo
    rev_parse = ["git", "-C", str(served_repo["repo"]), "rev-parse", "main"]
    commit = subprocess.run(rev_parse, check=True, capture_output=True, text=True).stdout.strip()
    sizes = {}
    for model in pulled.values():
        assert model["commit"] == commit and model["recorded"]
        assert model["checksums_from"] == ("cfzoo registry" if listed_by_cfzoo else "repo registry.json")
        for file in model["files"]:
            cached = Path(file["path"])
            assert cached.is_relative_to(tmp_path / "hf" / "hub") and cached.is_file()
            assert hashlib.sha256(cached.read_bytes()).hexdigest() == file["sha256"]
            assert cached.read_bytes() == (zoo / file["path_in_repo"]).read_bytes()
            sizes[file["path_in_repo"]] = file["size"]
    print(f"pulled {len(sizes)} files, {sum(sizes.values())} bytes, in {seconds:.2f} s (CLI process included): {sizes}")

    # The recorded source (pinned to the commit) lets resolve, and so every command, find the files in the cache.
    script = (
        "import json, numpy as np\n"
        "from cfzoo.zoo import load_registry, open_detector, resolve\n"
        "registry = load_registry()\n"
        f"ids = {list(MODEL_IDS)!r}\n"
        "sources = {i: [resolve(registry.get(i), kind).source for kind in ('detector', 'gradient')] for i in ids}\n"
        "hubs = {i: [registry.get(i).hub.repo_id, registry.get(i).hub.revision] for i in ids}\n"
        "probabilities = {i: float(open_detector(i, providers='cpu').probability(np.full((1, 3, 128, 128), 128, np.float32))[0]) for i in ids}\n"
        "print(json.dumps({'sources': sources, 'hubs': hubs, 'probabilities': probabilities}))\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), CFZOO_HOME=str(tmp_path / "cfzoo"), HF_HUB_OFFLINE="1")
    resolved = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert resolved.returncode == 0, resolved.stderr
    found = json.loads(resolved.stdout)
    assert found["sources"] == {model_id: ["hub-cache", "hub-cache"] for model_id in MODEL_IDS}
    assert found["hubs"] == {model_id: [REPO_ID, commit] for model_id in MODEL_IDS}
    assert all(0.0 <= probability <= 1.0 for probability in found["probabilities"].values())


def test_a_tampered_file_is_refused_and_leaves_nothing_in_the_cache(hub_endpoint, served_repo, tmp_path):
    completed = run_cfzoo(tmp_path, hub_endpoint, "pull", "spam-jpeg70", "--repo-id", REPO_ID, "--revision", "tampered")
    message = one_error_line(completed)
    assert TAMPERED_FILE in message and "sha256" in message and "deleted" in message
    leftovers = cache_files(tmp_path)
    assert not [path for path in leftovers if path.name == Path(TAMPERED_FILE).name]
    assert served_repo["tampered_sha256"] not in {
        hashlib.sha256(path.read_bytes()).hexdigest() for path in leftovers if path.is_file()
    }
    assert not (tmp_path / "cfzoo" / "zoo" / "registry.json").exists()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("pull", "spam-jpeg70", "--repo-id", "cfzoo-test/no-such-repo"), "no Hub repo cfzoo-test/no-such-repo"),
        (("pull", "spam-jpeg70", "--repo-id", REPO_ID, "--revision", "v9"), "has no revision 'v9'"),
        (("pull", "nosuch-jpeg70", "--repo-id", REPO_ID), "does not publish 'nosuch-jpeg70'"),
        (("pull", "nosuch-jpeg70"), "unknown model 'nosuch-jpeg70'"),
        (("pull",), "name the models to pull"),
    ],
)
def test_pull_failures_are_one_clear_line(hub_endpoint, tmp_path, arguments, expected):
    assert expected in one_error_line(run_cfzoo(tmp_path, hub_endpoint, *arguments))
    assert not list((tmp_path / "hf").rglob("*.onnx"))


def test_an_unreachable_endpoint_and_offline_mode_are_clear(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.perf_counter()
    message = one_error_line(run_cfzoo(tmp_path, closed, "pull", "spam-jpeg70", "--repo-id", REPO_ID))
    assert f"cannot reach the Hub at {closed}" in message
    assert time.perf_counter() - started < 20  # no silent retry loop
    message = one_error_line(
        run_cfzoo(tmp_path, closed, "pull", "spam-jpeg70", "--repo-id", REPO_ID, HF_HUB_OFFLINE="1")
    )
    assert "HF_HUB_OFFLINE is set" in message


def test_pull_all_takes_the_repo_registry(hub_endpoint, tmp_path):
    completed = run_cfzoo(tmp_path, hub_endpoint, "pull", "--all", "--family", "spam", "--repo-id", REPO_ID, "--json")
    assert completed.returncode == 0, completed.stderr
    assert [model["id"] for model in json.loads(completed.stdout)] == ["spam-jpeg70"]


def test_publish_without_a_token_is_a_dry_run_that_lists_files(hub_endpoint, source_zoo, tmp_path):
    zoo = source_zoo[0]
    out = tmp_path / "laid-out"
    completed = run_cfzoo(
        tmp_path,
        hub_endpoint,
        "publish",
        "--repo-id",
        "someone/cfzoo-models",
        "--zoo",
        str(zoo),
        *MODEL_IDS,
        "--out",
        str(out),
        "--json",
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert not result["uploaded"] and "no token" in result["reason"]
    files = {file["path"]: file for file in result["files"]}
    for model_id in MODEL_IDS:
        for name in (f"models/{model_id}.onnx", f"models/{model_id}.grad.onnx"):
            assert files[name]["sha256"] == hashlib.sha256((zoo / name).read_bytes()).hexdigest()
            assert files[name]["size"] == (zoo / name).stat().st_size
    assert {"registry.json", "README.md"} <= set(files)
    laid_out = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
    assert laid_out == set(files)
    published = json.loads((out / "registry.json").read_text())
    assert [model["id"] for model in published["models"]] == list(MODEL_IDS)
    assert all(model["hub"] == {"repo_id": "someone/cfzoo-models", "revision": "main"} for model in published["models"])
    assert hashlib.sha256((out / "registry.json").read_bytes()).hexdigest() == files["registry.json"]["sha256"]

    again = run_cfzoo(
        tmp_path,
        hub_endpoint,
        "publish",
        "--repo-id",
        "someone/cfzoo-models",
        "--zoo",
        str(zoo),
        "--out",
        str(out),
        "--dry-run",
    )
    assert "not an empty folder" in one_error_line(again)


def test_publish_refuses_a_zoo_file_that_does_not_match_its_registry(source_zoo, tmp_path):
    from cfzoo.errors import CfzooError

    zoo = tmp_path / "zoo"
    shutil.copytree(source_zoo[0], zoo)
    victim = zoo / "models" / f"{MODEL_IDS[0]}.grad.onnx"
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(CfzooError, match="does not match the sha256"):
        plan_publication("someone/cfzoo-models", zoo, MODEL_IDS, zoo_card=zoo_card)


def test_a_damaged_cached_file_is_downloaded_again_in_the_same_pull(hub_endpoint, tmp_path):
    first = run_cfzoo(tmp_path, hub_endpoint, "pull", "spam-jpeg70", "--repo-id", REPO_ID, "--json")
    assert first.returncode == 0, first.stderr
    (detector,) = [file for file in json.loads(first.stdout)[0]["files"] if file["kind"] == "detector"]
    blob = Path(detector["path"]).resolve()
    damaged = bytearray(blob.read_bytes())
    damaged[100] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    again = run_cfzoo(tmp_path, hub_endpoint, "pull", "spam-jpeg70", "--repo-id", REPO_ID)
    assert again.returncode == 0, again.stderr
    assert f"note: the cached {TAMPERED_FILE} did not match its sha256 and was downloaded again" in again.stdout
    assert hashlib.sha256(Path(detector["path"]).read_bytes()).hexdigest() == detector["sha256"]


def test_every_file_comes_from_the_commit_the_plan_resolved(hub_endpoint, served_repo, tmp_path, monkeypatch):
    """A branch that moves between planning and downloading does not mix two commits in one pull."""
    import huggingface_hub.constants

    from cfzoo.zoo.hub import plan_pull

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    repo = served_repo["repo"]
    plan = plan_pull(["spam-jpeg70"], REPO_ID, "main", endpoint=hub_endpoint, cache_dir=tmp_path / "hf")
    planned = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "main"], check=True, capture_output=True, text=True
    ).stdout.strip()
    moved = repo / TAMPERED_FILE
    original = moved.read_bytes()
    moved.write_bytes(original + b"\0")
    git(repo, "commit", "-q", "-am", "main moves on")
    try:
        (pulled,) = plan.run()
    finally:
        git(repo, "reset", "-q", "--hard", "HEAD~1")
    assert pulled.commit == planned
    assert all(file.path.parent.parent.name == planned for file in pulled.files)  # .../snapshots/<commit>/models/<file>
    assert (tmp_path / "hf").is_dir() and moved.read_bytes() == original


def test_publishing_a_zoo_leaves_out_listed_models_whose_files_live_elsewhere(source_zoo, tmp_path):
    """The package's registry lists Xception without shipping its 83 MB graphs: by default only models whose
    files are in the zoo are published; one named explicitly without its files is a one-line error."""
    from cfzoo.errors import CfzooError
    from cfzoo.zoo.registry import REGISTRY_NAME, Registry

    zoo, _ = source_zoo
    listed = Registry.read(zoo / REGISTRY_NAME)
    partial = tmp_path / "zoo"
    (partial / "models").mkdir(parents=True)
    shipped, elsewhere = MODEL_IDS[0], MODEL_IDS[1]
    for model_file in listed.get(shipped).files.values():
        shutil.copy(zoo / model_file.path_in_zoo, partial / model_file.path_in_zoo)
    Registry([listed.get(shipped), listed.get(elsewhere)]).write(partial / REGISTRY_NAME)

    assert plan_publication("someone/models", partial, zoo_card=zoo_card).models == (shipped,)
    with pytest.raises(CfzooError, match=f"{elsewhere}.onnx is missing"):
        plan_publication("someone/models", partial, [shipped, elsewhere], zoo_card=zoo_card)
