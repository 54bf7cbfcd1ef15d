"""The zoo: registry JSON, overlay precedence, file resolution (path > user > hub-cache > embedded) with sha256
checks, cached onnxruntime sessions, and the `cfzoo list` / `cfzoo export` commands.

Real files throughout: the embedded spam-jpeg70 model (or, while the embedded zoo is empty, the same model
exported from checkpoints/cameras-seed0), zoo folders and a Hugging Face cache laid out in tmp_path, real
onnxruntime sessions on patches of scikit-image's photos.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.files import file_sha256
from cfzoo.images import read_rgb
from cfzoo.manipulations import apply_manipulation
from cfzoo.patches import cut_patches, sample_positions
from cfzoo.sample_data import skimage_data_dir
from cfzoo.zoo import (
    HubSource,
    ModelEntry,
    ModelFile,
    Registry,
    embedded_zoo_dir,
    execution_providers,
    load_registry,
    manipulated_probability,
    open_companion,
    open_detector,
    resolve,
    user_zoo_dir,
)
from cfzoo.zoo.registry import REGISTRY_NAME, embedded_registry
from cfzoo.zoo.restorers import Zoo, load_restorer_registry
from cfzoo.zoo.runtime import clear_session_cache

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints" / "cameras-seed0"
MODEL_ID = "spam-jpeg70"
HUB = HubSource("cfzoo/detectors", "main")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def entry_for(
    model_id: str, embedded: bool = False, hub: HubSource | None = None, digest: str = "ab", acc: float = 90.0
) -> ModelEntry:
    family, task = model_id.split("-", 1)
    return ModelEntry(
        id=model_id,
        family=family,
        task=task,
        files={
            "detector": ModelFile(f"{model_id}.onnx", digest * 32, 100),
            "gradient": ModelFile(f"{model_id}.grad.onnx", digest[::-1] * 32, 200),
        },
        threshold=0.0 if family == "spam" else 0.5,
        score="svm decision function" if family == "spam" else "softmax probability of class 1",
        metrics={"test": {"fpr": 1.5, "tpr": 97.25, "acc": acc, "pristine": 10, "manipulated": 10}},
        training={"seed": 0, "split": {"train": ["a", "b"], "test": ["c"], "seed": 0}, "hyperparameters": {"C": 1.0}},
        embedded=embedded,
        hub=hub,
    )


@pytest.fixture(scope="module")
def source_zoo(tmp_path_factory):
    """(zoo folder, registry entry) holding MODEL_ID's real ONNX files: the embedded zoo, or an export of the checkpoint."""
    embedded = embedded_registry()
    if MODEL_ID in embedded:
        return embedded_zoo_dir(), embedded.get(MODEL_ID)
    pytest.importorskip("torch", reason="the embedded zoo is empty and exporting the checkpoint needs torch")
    from cfzoo.families import export_to_zoo

    zoo = tmp_path_factory.mktemp("exported-zoo")
    return zoo, export_to_zoo(CHECKPOINTS, [MODEL_ID], zoo).get(MODEL_ID)


def copy_model(source: Path, entry: ModelEntry, zoo: Path) -> None:
    for file in entry.files.values():
        (zoo / file.path_in_zoo).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / file.path_in_zoo, zoo / file.path_in_zoo)


def install_in_user_zoo(source_zoo) -> ModelEntry:
    """Copy the model's files and entry into $CFZOO_HOME/zoo, as `cfzoo export` or `cfzoo pull` would leave them."""
    source, entry = source_zoo
    copy_model(source, entry, user_zoo_dir())
    user_entry = replace(entry, embedded=False)
    Registry([user_entry]).write(user_zoo_dir() / REGISTRY_NAME)
    return user_entry


@pytest.fixture
def available_model(source_zoo):
    """MODEL_ID loadable by id: embedded already, or installed in this test's user zoo."""
    if not load_registry().__contains__(MODEL_ID):
        install_in_user_zoo(source_zoo)
    return MODEL_ID


@pytest.fixture
def hub_cache(monkeypatch):
    """This test's (empty) Hugging Face hub cache folder. huggingface_hub reads HF_HOME once, at import, so the cache
    path it uses is pointed here too (see test_each_test_gets_its_own_hugging_face_cache)."""
    import huggingface_hub.constants

    cache = Path(os.environ["HF_HOME"]) / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_in_hub_cache(cache: Path, source: Path, entry: ModelEntry, hub: HubSource) -> Path:
    """The layout hf_hub_download leaves: refs/<revision> -> commit, snapshots/<commit>/<path in repo>."""
    repo = cache / f"models--{hub.repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / hub.revision).write_text(COMMIT)
    copy_model(source, entry, repo / "snapshots" / COMMIT)
    return repo / "snapshots" / COMMIT


@pytest.fixture(scope="module")
def patches():
    """7 real pristine patches of scikit-image's astronaut and the same 7 after JPEG Q=70, float32 [7,3,128,128]."""
    photo = read_rgb(skimage_data_dir() / "astronaut.png")
    positions = sample_positions(*photo.shape[:2], seed=[0], count=7)
    pristine, compressed = (cut_patches(image, positions) for image in (photo, apply_manipulation("jpeg70", photo)))
    return pristine.transpose(0, 3, 1, 2).astype(np.float32), compressed.transpose(0, 3, 1, 2).astype(np.float32)


@pytest.fixture
def runner():
    return CliRunner()


# --- registry -------------------------------------------------------------------------------------------


def test_registry_json_round_trip_keeps_every_field_in_canonical_order(tmp_path):
    entries = [
        entry_for("cozzolino2017-median3", hub=HUB, digest="cd"),
        entry_for("spam-jpeg90", embedded=True),
        entry_for("spam-blur1.1", digest="ef", acc=99.99),
    ]
    path = Registry(entries).write(tmp_path / "zoo" / REGISTRY_NAME)
    payload = json.loads(path.read_text())
    assert payload["schema"] == 1
    assert [model["id"] for model in payload["models"]] == ["spam-blur1.1", "spam-jpeg90", "cozzolino2017-median3"]
    again = Registry.read(path)
    assert {entry.id: entry for entry in again} == {entry.id: entry for entry in entries}
    assert again.get("cozzolino2017-median3").hub == HUB
    assert again.get("spam-jpeg90").embedded and again.get("spam-blur1.1").test_accuracy == 99.99
    assert again.to_json() == payload
    assert list(tmp_path.joinpath("zoo").iterdir()) == [path]  # written atomically: no temporary left


def test_unreadable_registries_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CfzooError, match=r"broken.json is not valid JSON .*; delete it or export the models again"):
        Registry.read(broken)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"schema": 99, "models": []}))
    with pytest.raises(CfzooError, match=r"foreign.json is not a cfzoo registry \(schema 1\)"):
        Registry.read(foreign)
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"schema": 1, "models": [{"id": "spam-jpeg70", "family": "spam"}]}))
    with pytest.raises(
        CfzooError, match=r"incomplete.json: entry 'spam-jpeg70': task: Field required \(and \d+ more\)"
    ):
        Registry.read(incomplete)


def test_merged_overlay_wins_adds_and_keeps_embedded_only_for_identical_files():
    base = Registry([entry_for("spam-jpeg70", embedded=True), entry_for("spam-jpeg90", embedded=True)])
    overlay = Registry(
        [
            entry_for("spam-jpeg70", acc=12.5),  # same files, new metrics: still the embedded files
            entry_for("spam-jpeg90", digest="ff"),  # re-exported: other files, no longer embedded
            entry_for("bayar2016-jpeg70", hub=HUB),  # new
        ]
    )
    merged = base.merged(overlay)
    assert [entry.id for entry in merged] == ["spam-jpeg70", "spam-jpeg90", "bayar2016-jpeg70"]
    assert merged.get("spam-jpeg70").test_accuracy == 12.5 and merged.get("spam-jpeg70").embedded
    assert merged.get("spam-jpeg90").files["detector"].sha256 == "ff" * 32 and not merged.get("spam-jpeg90").embedded
    assert merged.get("bayar2016-jpeg70").hub == HUB and not merged.get("bayar2016-jpeg70").embedded
    assert len(base) == 2 and base.get("spam-jpeg70").test_accuracy == 90.0  # the base is unchanged


def test_select_filters_and_rejects_unknown_families_and_tasks():
    registry = Registry([entry_for("spam-jpeg70"), entry_for("spam-median3"), entry_for("bayar2016-jpeg70")])
    assert [entry.id for entry in registry.select(["spam"])] == ["spam-jpeg70", "spam-median3"]
    assert [entry.id for entry in registry.select(None, ["jpeg70"])] == ["spam-jpeg70", "bayar2016-jpeg70"]
    assert registry.select(["xception"]) == []
    with pytest.raises(
        CfzooError, match=r"^unknown family 'resnet'; choose from: spam, bayar2016, cozzolino2017, xception, external$"
    ):
        registry.select(["spam", "resnet"])
    with pytest.raises(CfzooError, match=r"^unknown task 'jpeg75'; choose from: blur1.1, .*resize1.01$"):
        registry.select(None, ["jpeg75"])
    with pytest.raises(CfzooError, match=r"unknown model 'spam-jpeg75'; `cfzoo list` shows the models"):
        registry.get("spam-jpeg75")


# --- resolution -----------------------------------------------------------------------------------------


def test_resolution_order_is_path_user_hub_cache_embedded(source_zoo, hub_cache, tmp_path):
    source, entry = source_zoo
    entry = replace(entry, hub=HUB)
    explicit = tmp_path / "mine.onnx"
    shutil.copyfile(source / entry.files["detector"].path_in_zoo, explicit)
    snapshot = put_in_hub_cache(hub_cache, source, entry, HUB)
    copy_model(source, entry, user_zoo_dir())

    assert (
        resolve(entry, "detector", explicit).source == "path" and resolve(entry, "detector", explicit).path == explicit
    )
    for kind in ("detector", "gradient"):
        found = resolve(entry, kind)
        assert (found.source, found.path) == ("user", user_zoo_dir() / entry.files[kind].path_in_zoo)
    (user_zoo_dir() / entry.files["detector"].path_in_zoo).unlink()
    found = resolve(entry, "detector")
    assert (found.source, found.path) == ("hub-cache", snapshot / entry.files["detector"].path_in_zoo)
    (snapshot / entry.files["detector"].path_in_zoo).unlink()
    found = resolve(entry, "detector")
    assert (found.source, found.path) == ("embedded", embedded_zoo_dir() / entry.files["detector"].path_in_zoo)


def test_a_tampered_user_zoo_file_is_refused_with_what_to_do(source_zoo, hub_cache):
    entry = install_in_user_zoo(source_zoo)
    detector = user_zoo_dir() / entry.files["detector"].path_in_zoo
    content = bytearray(detector.read_bytes())
    content[len(content) // 2] ^= 0xFF
    detector.write_bytes(bytes(content))
    expected = (
        f"{detector} (user) does not match the registry's sha256 for {MODEL_ID}; "
        f"delete it, then run `cfzoo pull {MODEL_ID}` or export the model again"
    )
    with pytest.raises(CfzooError) as raised:
        resolve(entry, "detector")
    assert str(raised.value) == expected
    with pytest.raises(CfzooError) as raised:
        open_detector(MODEL_ID, providers="cpu")
    assert str(raised.value) == expected
    assert resolve(entry, "gradient").source == "user"  # the untouched companion still resolves


def test_a_missing_model_says_how_to_get_it(source_zoo, hub_cache, tmp_path):
    _, entry = source_zoo
    on_hub = replace(entry, embedded=False, hub=HUB)
    with pytest.raises(
        CfzooError, match=rf"^model {MODEL_ID} \(detector\) is not available here; run `cfzoo pull {MODEL_ID}`$"
    ):
        resolve(on_hub, "detector")
    local_only = replace(entry, embedded=False, hub=None)
    with pytest.raises(
        CfzooError,
        match=r"not available here; train and export it: cfzoo train DATA -f spam -t jpeg70, then cfzoo export",
    ):
        resolve(local_only, "gradient")
    with pytest.raises(
        CfzooError, match=r"model file .*missing.onnx does not exist; give the path of an exported .onnx file"
    ):
        resolve(entry, "detector", tmp_path / "missing.onnx")
    with pytest.raises(CfzooError, match=r"model spam-jpeg70 has no heatmap file; kinds: detector, gradient"):
        entry.file("heatmap")


# --- runtime --------------------------------------------------------------------------------------------


def test_sessions_are_cached_and_score_batches_of_1_and_7(available_model, patches):
    pristine, compressed = patches
    detector = open_detector(available_model, providers="cpu")
    assert open_detector(available_model, providers="cpu") is detector
    assert detector.providers == ("CPUExecutionProvider",)
    assert detector.session.get_session_options().get_session_config_entry("session.use_env_allocators") == "1"
    for images in (pristine[:1], pristine):
        logits = detector.logits(images)
        assert logits.shape == (len(images), 2) and logits.dtype == np.float32 and np.isfinite(logits).all()
    np.testing.assert_allclose(detector.logits(pristine[3:4]), detector.logits(pristine)[3:4], rtol=1e-5, atol=1e-5)

    probabilities = detector.probability(np.concatenate([pristine, compressed]))
    np.testing.assert_allclose(
        probabilities, manipulated_probability(detector.logits(np.concatenate([pristine, compressed])))
    )
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    called = probabilities > detector.threshold
    correct = (~called[:7]).sum() + called[7:].sum()
    assert correct >= 12, f"spam-jpeg70 tells only {correct} of 14 astronaut patches apart: {probabilities.round(3)}"

    gradient_model = open_companion(available_model, providers="cpu")
    assert open_companion(available_model, providers="cpu") is gradient_model
    for images in (compressed[:1], compressed):
        logits, gradient = gradient_model.logits_and_gradient(images, np.ones(len(images)))
        assert logits.shape == (len(images), 2) and gradient.shape == images.shape
        assert np.isfinite(gradient).all() and np.abs(gradient).max() > 0

    # one cache for both kinds, keyed by model, providers and explicit path
    by_path = open_companion(available_model, providers="cpu", path=gradient_model.path)
    assert (
        by_path is not gradient_model
        and by_path.session.get_session_options().get_session_config_entry("session.use_env_allocators") == "1"
    )
    assert open_companion(available_model, providers="cpu") is gradient_model
    assert open_detector(available_model, providers="cpu") is detector
    # a file that says it is another model, or the other kind of file, is refused in one line
    other = next(entry.id for entry in load_registry() if entry.id != available_model and entry.embedded)
    with pytest.raises(CfzooError, match=f"is {available_model}'s gradient, not {other}'s"):
        open_companion(other, providers="cpu", path=gradient_model.path)
    with pytest.raises(CfzooError, match="is a gradient graph, not a detector graph"):
        open_detector(available_model, providers="cpu", path=gradient_model.path)

    clear_session_cache()
    assert open_detector(available_model, providers="cpu") is not detector


class RecordingSession:
    """A real onnxruntime session that notes each run's batch size and thread."""

    def __init__(self, session):
        self.session, self.runs = session, []

    def get_providers(self):
        return self.session.get_providers()

    def run(self, outputs, feeds):
        self.runs.append((len(feeds["image"]), threading.current_thread().name))
        return self.session.run(outputs, feeds)


def test_cpu_runs_split_their_rows_into_one_thread_shares_that_give_the_same_results(
    available_model, patches, monkeypatch
):
    from cfzoo.ops.restore import load_restorer
    from cfzoo.zoo import runtime

    images = np.concatenate(patches)[:7]
    detector, companion = (
        open_detector(available_model, providers="cpu"),
        open_companion(available_model, providers="cpu"),
    )
    features = runtime.load_spam_feature_companion("cpu")
    for model in (detector, companion, features):
        assert model.session.get_session_options().intra_op_num_threads == 1
    # a restorer runs one whole tile at a time: its session spreads each run over the cores instead
    assert load_restorer("median3", "kim", providers="cpu").session.get_session_options().intra_op_num_threads == 0

    labels = np.ones(len(images), dtype=np.int64)
    goal, weight = (
        np.zeros((len(images), features.dimension), np.float32),
        np.linspace(0.5, 1.5, features.dimension, dtype=np.float32),
    )
    cases = (
        (detector.session, ["logits"], {"image": images}, {}),
        (companion.session, ["logits", "grad"], {"image": images, "label": labels}, {}),
        (features.session, ["distance", "features", "grad"], {"image": images, "goal": goal}, {"weight": weight}),
    )
    monkeypatch.setattr(runtime, "_session_threads", 3)
    for session, outputs, rows, shared in cases:
        recording = RecordingSession(session)
        split = runtime.run_rows(recording, outputs, rows, shared)
        assert sorted(size for size, _ in recording.runs) == [2, 2, 3]
        assert all(thread.startswith("cfzoo-rows") for _, thread in recording.runs)
        for share, whole in zip(split, session.run(outputs, {**rows, **shared}), strict=True):
            np.testing.assert_allclose(share, whole, rtol=1e-6, atol=1e-6)
    runtime.set_session_threads(1)  # what a Ray worker given one CPU sets: one run, on the calling thread
    recording = RecordingSession(detector.session)
    runtime.run_rows(recording, ["logits"], {"image": images})
    assert recording.runs == [(7, threading.current_thread().name)]


def test_one_cache_holds_every_kind_of_session_and_drops_the_least_recently_used(available_model, monkeypatch):
    from cfzoo.ops.restore import load_restorer
    from cfzoo.zoo import runtime

    restorer = load_restorer("median3", "kim", providers="cpu")
    assert load_restorer("median3", "kim", providers="cpu") is restorer
    features = runtime.load_spam_feature_companion("cpu")
    assert runtime.load_spam_feature_companion("cpu") is features
    detector = open_detector(available_model, providers="cpu")
    monkeypatch.setattr(runtime, "SESSION_CACHE_SIZE", 2)
    gradient_model = open_companion(available_model, providers="cpu")  # the cache keeps the two used last
    assert open_detector(available_model, providers="cpu") is detector
    assert open_companion(available_model, providers="cpu") is gradient_model
    assert load_restorer("median3", "kim", providers="cpu") is not restorer
    clear_session_cache()
    assert open_companion(available_model, providers="cpu") is not gradient_model


def test_images_off_the_contract_are_refused(available_model, patches):
    detector = open_detector(available_model, providers="cpu")
    with pytest.raises(CfzooError, match=r"images must be \[N,3,128,128\] RGB 0..255, got shape \[7, 128, 128, 3\]"):
        detector.logits(patches[0].transpose(0, 2, 3, 1))
    with pytest.raises(CfzooError, match="7 images but 2 labels"):
        open_companion(available_model, providers="cpu").logits_and_gradient(patches[0], [0, 1])


def test_providers():
    import onnxruntime

    assert execution_providers("cpu") == ("CPUExecutionProvider",)
    with pytest.raises(CfzooError, match=r"unknown provider 'tpu'; choose one of: auto, cpu, cuda"):
        execution_providers("tpu")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert execution_providers("cuda") == ("CUDAExecutionProvider", "CPUExecutionProvider")
        return
    assert execution_providers("auto") == ("CPUExecutionProvider",)
    with pytest.raises(
        CfzooError, match=r"^CUDA is not available to onnxruntime; install the GPU build .* or use --providers cpu$"
    ):
        execution_providers("cuda")


def test_each_test_gets_its_own_hugging_face_cache():
    """conftest's isolated_homes sets HF_HOME per test; huggingface_hub must look there, not in the cache it found at import."""
    import huggingface_hub.constants

    assert Path(huggingface_hub.constants.HF_HUB_CACHE) == Path(os.environ["HF_HOME"]) / "hub"


# --- CLI ------------------------------------------------------------------------------------------------


def test_list_json_shows_the_embedded_models_and_the_user_zoo_first(runner, source_zoo):
    embedded = [entry for entry in embedded_registry() if entry.embedded]
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    rows = [row for row in listed if row["kind"] == "detector" and row["registered"]]
    assert [row["id"] for row in rows] == [entry.id for entry in embedded_registry()]
    # every family x task slot is listed, with no source where nothing is published, and the restorers after them
    unpublished = [row for row in listed if not row["registered"]]
    standard = [row for row in rows if row["variant"] == "standard"]
    assert len(standard) + len(unpublished) == 32 and all(
        not row["available"] and row["sources"] == [] for row in unpublished
    )
    assert "xception-blur1.1" in {row["id"] for row in unpublished}
    restorers = [row for row in listed if row["kind"] == "restorer"]
    assert [row["id"] for row in restorers] == [entry.id for entry in load_restorer_registry()]
    assert all(row["available"] and row["sources"] == ["embedded"] for row in restorers)
    for row, entry in zip(rows, embedded_registry()):
        assert row["sources"] == (["embedded"] if entry.embedded else [])
        assert row["available"] == entry.embedded and row["test_acc"] == entry.test_accuracy
        assert row["size_bytes"] == sum(file.size for file in entry.files.values())
    assert embedded

    install_in_user_zoo(source_zoo)
    rows = json.loads(
        runner.invoke(app, ["list", "--json", "--family", "spam", "--task", "jpeg70", "--variant", "standard"]).stdout
    )
    assert [(row["id"], row["sources"]) for row in rows] == [(MODEL_ID, ["user", "embedded"])]


def test_list_with_an_unknown_family_is_one_line_and_exit_1(runner):
    result = runner.invoke(app, ["list", "--family", "resnet"])
    assert result.exit_code == 1
    assert (
        result.stderr
        == "error: unknown family 'resnet'; choose from: spam, bayar2016, cozzolino2017, xception, external\n"
    )
    assert result.stdout == ""


def test_export_writes_both_files_and_a_matching_registry_entry(runner, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    pytest.importorskip("skl2onnx")
    model_id, zoo = "bayar2016-jpeg70", tmp_path / "zoo"
    result = runner.invoke(app, ["export", model_id, "--checkpoints", str(CHECKPOINTS), "--zoo", str(zoo), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    registry = Registry.read(zoo / REGISTRY_NAME)
    entry = registry.get(model_id)
    assert [item["id"] for item in printed] == [model_id] and printed[0] == entry.to_json()
    assert sorted(path.name for path in (zoo / "models").iterdir()) == [f"{model_id}.grad.onnx", f"{model_id}.onnx"]
    for kind, name in (("detector", f"{model_id}.onnx"), ("gradient", f"{model_id}.grad.onnx")):
        path = zoo / "models" / name
        assert entry.files[kind] == ModelFile(name, file_sha256(path), path.stat().st_size)
    record = json.loads((CHECKPOINTS / f"{model_id}.json").read_text())
    assert entry.metrics == record["metrics"] and entry.threshold == record["threshold"]
    assert entry.training["training_data_sha256"] == record["training_data_sha256"] and not entry.embedded


#: `cfzoo ARGS` in an interpreter in which importing torch fails, after importing the runtime path itself.
NO_TORCH_CLI = """
import sys
import threading

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked")

sys.meta_path.insert(0, NoTorch())
import cfzoo.ops.attacks.fgsm, cfzoo.ops.attacks.image, cfzoo.ops.detect, cfzoo.ops.restore, cfzoo.experiments.reproduce, cfzoo.zoo, cfzoo.zoo.runtime
from cfzoo.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit as exit:
    assert not exit.code, exit.code
loaded = sorted(name for name in sys.modules if name == "torch" or name.startswith("torch."))
assert not loaded, loaded
"""


def run_cli_without_torch(
    args: list[str], cfzoo_home: Path, timeout: int = 120, **environment: str
) -> subprocess.CompletedProcess:
    """Runs `cfzoo ARGS` in a fresh interpreter without torch (see NO_TORCH_CLI), with ``CFZOO_HOME`` and any other
    ``environment`` variables set, and asserts that it succeeds and that nothing imported torch; also used by
    test_model_cards, test_restoration and test_reproduce."""
    environment = {**os.environ, "CFZOO_HOME": str(cfzoo_home), **environment}
    completed = subprocess.run(
        [sys.executable, "-c", NO_TORCH_CLI, *args], capture_output=True, text=True, env=environment, timeout=timeout
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def test_runtime_modules_import_without_torch(tmp_path):
    json.loads(run_cli_without_torch(["list", "--json"], tmp_path / "home").stdout)


def test_one_zoo_holds_every_kind_and_one_resolver_finds_and_checks_each(tmp_path):
    """Detectors, restorers and conclusion models are entries of one zoo with a kind; the same resolver finds each
    file in the embedded zoo and refuses a user-zoo copy that does not match its sha256, with that kind's repair."""
    zoo = Zoo.load()
    detector, restorer, conclusion = zoo.get("spam-jpeg70"), zoo.get("restorer-median3-kim"), zoo.get("conclusion-zoo")
    assert (detector.kind, restorer.kind, conclusion.kind) == ("detector", "restorer", "conclusion")
    assert {entry.kind for entry in zoo} >= {"detector", "restorer", "conclusion"}
    assert len(list(zoo)) == len(zoo.detectors) + len(zoo.restorers) + len(zoo.conclusions)
    for entry, kind in (
        (detector, "detector"),
        (detector, "gradient"),
        (restorer, "restorer"),
        (conclusion, "conclusion"),
    ):
        found = resolve(entry, kind)
        assert found.source == "embedded" and file_sha256(found.path) == entry.files[kind].sha256
        tampered = user_zoo_dir() / found.path.relative_to(embedded_zoo_dir())
        tampered.parent.mkdir(parents=True, exist_ok=True)
        tampered.write_bytes(found.path.read_bytes() + b"\0")
        with pytest.raises(
            CfzooError, match=f"^{re.escape(str(tampered))} \\(user\\) does not match the {entry.listed_in}'s sha256"
        ) as error:
            resolve(entry, kind)
        assert str(error.value).endswith(entry.how_to_repair())
        tampered.unlink()
    with pytest.raises(CfzooError, match="^restorer restorer-median3-kim has no gradient file; kinds: restorer$"):
        resolve(restorer, "gradient")
    with pytest.raises(CfzooError, match="^unknown model 'restorer-jpeg70-kim'"):
        zoo.get("restorer-jpeg70-kim")
