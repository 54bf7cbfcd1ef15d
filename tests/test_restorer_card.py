"""The restorer model card: generated from the real embedded restorer registry (and from a copy missing one restorer),
front matter parsed back with PyYAML and huggingface_hub, every number and sha256 from the registry, byte-for-byte
deterministic, and written by `cfzoo cards` beside the detector cards. No inference: the card reads the registry only.
"""

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cfzoo.cards.model_cards import registry_families
from cfzoo.cards.restorer_card import RESTORER_CARD_NAME, restorer_card, write_restorer_card
from cfzoo.cli import app
from cfzoo.zoo.registry import REGISTRY_NAME, Registry, embedded_zoo_dir
from cfzoo.zoo.restorers import (
    DISCRIMINATORS,
    RESTORATION_TASKS,
    RESTORER_REGISTRY_NAME,
    RestorerRegistry,
    how_to_get,
    load_restorer_registry,
    restorer_id,
)

EVERY_RESTORER = [restorer_id(task, kind) for task in RESTORATION_TASKS for kind in DISCRIMINATORS]


@pytest.fixture(scope="module")
def embedded():
    registry = RestorerRegistry.read(embedded_zoo_dir() / RESTORER_REGISTRY_NAME)
    assert len(registry) >= 2, "the embedded zoo should ship restorers"
    return registry


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, embedded):
    """A zoo folder with the embedded detector registry and the embedded restorer registry less its last restorer."""
    zoo = tmp_path_factory.mktemp("zoo")
    shutil.copy(embedded_zoo_dir() / REGISTRY_NAME, zoo / REGISTRY_NAME)
    RestorerRegistry(list(embedded)[:-1]).write(zoo / RESTORER_REGISTRY_NAME)
    return zoo


@pytest.fixture
def runner():
    return CliRunner()


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def results_by_restorer(metadata: dict) -> dict:
    """{restorer id: {(metric config, metric type): value}} from the model-index."""
    (model,) = metadata["model-index"]
    assert model["name"] == "cfzoo-restorers"
    return {
        result["dataset"]["config"]: {
            (metric["config"], metric["type"]): metric["value"] for metric in result["metrics"]
        }
        for result in model["results"]
    }


def test_front_matter_parses_and_its_model_index_is_the_registrys_psnr_and_ssim(embedded):
    card = restorer_card(embedded)
    metadata = front_matter(card.text)
    assert (
        metadata["license"] == "mit"
        and metadata["library_name"] == "onnx"
        and metadata["pipeline_tag"] == "image-to-image"
    )
    tasks = {entry.task for entry in embedded}
    base = ["image-forensics", "counter-forensics", "image-restoration", "median-filtering", "onnx", "cfzoo"]
    assert metadata["tags"] == base + [f"task-{task}" for task in RESTORATION_TASKS if task in tasks]
    results = results_by_restorer(metadata)
    assert list(results) == [entry.id for entry in embedded] == list(card.models)
    for entry in embedded:
        test = entry.metrics["test"]
        assert results[entry.id] == {
            ("restored", "psnr"): round(test["restored"]["psnr_db"], 2),
            ("restored", "ssim"): round(test["restored"]["ssim"], 4),
            ("filtered", "psnr"): round(test["input"]["psnr_db"], 2),
            ("filtered", "ssim"): round(test["input"]["ssim"], 4),
        }
        assert test["restored"]["psnr_db"] > test["input"]["psnr_db"]  # the gain the card shows is real
    from huggingface_hub import ModelCard  # imported here: conftest sets HF_HOME per test

    parsed = ModelCard(card.text)
    assert parsed.data.library_name == "onnx" and len(parsed.data.eval_results) == 4 * len(embedded)
    assert {result.task_type for result in parsed.data.eval_results} == {"image-to-image"}


def test_card_states_each_restorers_numbers_files_and_training_record(embedded):
    text = restorer_card(embedded).text
    for entry in embedded:
        test, hyper = entry.metrics["test"], entry.training["hyperparameters"]
        assert (
            f"| `{entry.id}` | `{entry.task}` | `{entry.discriminator}` | `models/{entry.file.name}` | {entry.file.size / 1e6:.2f} | "
            f"{entry.receptive_radius} | {test['pairs']} | {test['input']['psnr_db']:.2f} -> {test['restored']['psnr_db']:.2f} | "
            f"{test['input']['ssim']:.4f} -> {test['restored']['ssim']:.4f} |"
        ) in text
        assert f"| `{entry.id}` | `models/{entry.file.name}` | {entry.file.size:,} | `{entry.file.sha256}` |" in text
        assert f"| {entry.training['training_seconds']:g} |" in text
        assert hyper["discriminator"].removeprefix(f"{entry.discriminator}: ") in text
        assert hyper["optimiser"] in text and hyper["generator"] in text
        assert f"{hyper['batch_size']} random {hyper['crop']}x{hyper['crop']} crops" in text
        weights = hyper["loss_weights"]
        assert (
            f"{weights['pixel']:g} x pixel + {weights['perceptual']:g} x perceptual + {weights['adversarial']:g} x adversarial"
            in text
        )
        split = entry.training["split"]
        assert f"train devices: {', '.join(split['train'])}; test devices: {', '.join(split['test'])}" in text
        assert entry.training["training_data_sha256"] in text
    assert (
        "input `image` float32 [N,3,H,W], RGB, values 0..255" in text and "output `restored` float32 [N,3,H,W]" in text
    )
    assert "N, H and W are dynamic" in text and "Tiled processing uses it as the tiles' overlap" in text
    assert "Machine: CPU (2 cores), no GPU." in text
    assert "cfzoo restore --evaluate --data DIR" in text and "docs/restoration.md" in text
    example = list(embedded)[-1]
    assert (
        f"cfzoo restore filtered.png --task {example.task} --discriminator {example.discriminator} --out restored.png"
        in text
    )


def test_missing_restorers_are_named_and_left_out(embedded, zoo):
    full = restorer_card(embedded)
    assert full.missing == tuple(i for i in EVERY_RESTORER if i not in embedded)
    assert f"This card covers {len(embedded)} of the {len(EVERY_RESTORER)} restorers." in full.text
    for model_id in full.missing:
        assert f"`{model_id}`" in full.text

    registry = RestorerRegistry.read(zoo / RESTORER_REGISTRY_NAME)
    dropped = list(embedded)[-1]
    card = restorer_card(registry)
    assert dropped.id in card.missing and dropped.id not in card.models and len(card.models) == len(embedded) - 1
    assert f"This card covers {len(registry)} of the {len(EVERY_RESTORER)} restorers. Not in the registry" in card.text
    assert f"- To add `{dropped.id}`, {how_to_get(dropped.task, dropped.discriminator)}." in card.text
    assert dropped.file.sha256 not in card.text and f"| `{dropped.id}` |" not in card.text
    assert dropped.id not in results_by_restorer(front_matter(card.text))
    for entry in registry:
        assert entry.file.sha256 in card.text


def test_card_is_deterministic(embedded, tmp_path):
    entries = list(embedded)
    random.Random(0).shuffle(entries)
    card = restorer_card(embedded)
    assert restorer_card(RestorerRegistry(entries)).text == card.text == restorer_card(embedded).text
    first = write_restorer_card(tmp_path / "a", card).read_bytes()
    second = write_restorer_card(tmp_path / "b", restorer_card(RestorerRegistry(entries))).read_bytes()
    assert first == second == card.text.encode()
    assert [path.name for path in (tmp_path / "a").iterdir()] == [RESTORER_CARD_NAME]  # no temporary file left


def test_cards_command_writes_the_restorer_card_beside_the_detector_cards(runner, zoo, tmp_path):
    out = tmp_path / "cards"
    result = runner.invoke(app, ["cards", "--zoo", str(zoo), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    families = registry_families(Registry.read(zoo / REGISTRY_NAME))
    assert [item["card"] for item in written] == [*families, "restorers"]
    restorers = RestorerRegistry.read(zoo / RESTORER_REGISTRY_NAME)
    card = restorer_card(restorers)
    assert written[-1] == {
        "card": "restorers",
        "path": str(out / RESTORER_CARD_NAME),
        "models": list(card.models),
        "missing_restorers": list(card.missing),
    }
    assert (out / RESTORER_CARD_NAME).read_text() == card.text
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [*(f"{family}.md" for family in families), RESTORER_CARD_NAME]
    )

    result = runner.invoke(app, ["cards", "--zoo", str(zoo), "--out", str(tmp_path / "lines")])
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.splitlines()[-1]
        == f"{tmp_path / 'lines' / RESTORER_CARD_NAME}: {len(card.models)} restorers; missing: {', '.join(card.missing)}"
    )

    family = families[0]
    result = runner.invoke(app, ["cards", "--zoo", str(zoo), "--out", str(tmp_path / "family"), "--family", family])
    assert result.exit_code == 0, result.output
    assert [path.name for path in (tmp_path / "family").iterdir()] == [f"{family}.md"]  # --family: detector cards only


def test_cards_command_on_a_restorer_only_zoo_and_by_default(runner, zoo, tmp_path):
    restorers_only = tmp_path / "restorers-zoo"
    restorers_only.mkdir()
    shutil.copy(zoo / RESTORER_REGISTRY_NAME, restorers_only / RESTORER_REGISTRY_NAME)
    result = runner.invoke(app, ["cards", "--zoo", str(restorers_only), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert [path.name for path in (tmp_path / "a").iterdir()] == [RESTORER_CARD_NAME]

    result = runner.invoke(app, ["cards", "--out", str(tmp_path / "b"), "--json"])  # no --zoo: every model cfzoo knows
    assert result.exit_code == 0, result.output
    assert [item["card"] for item in json.loads(result.stdout)][-2:] == ["restorers", "conclusion-zoo"]
    assert (tmp_path / "b" / RESTORER_CARD_NAME).read_text() == restorer_card(load_restorer_registry()).text

    result = runner.invoke(app, ["cards", "--zoo", str(tmp_path / "nowhere")])
    assert (
        result.exit_code == 1
        and "registry.json does not exist; give a zoo folder written by `cfzoo export --zoo DIR`" in result.stderr
    )


def test_the_published_restorer_card_matches_the_embedded_registry(embedded):
    """model_cards/restorers.md is what `cfzoo cards --zoo cfzoo/zoo/embedded` writes: regenerate it after exporting restorers."""
    path = Path(__file__).resolve().parents[1] / "model_cards" / RESTORER_CARD_NAME
    assert path.is_file() and path.read_text() == restorer_card(embedded).text, (
        f"{path} is stale; run `cfzoo cards --zoo cfzoo/zoo/embedded`"
    )
