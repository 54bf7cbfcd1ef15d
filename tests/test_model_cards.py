"""Model cards: generated from registry entries built from the real training records in checkpoints/cameras-seed0,
parsed back with huggingface_hub's own ModelCard, byte-for-byte deterministic, written by `cfzoo cards` (also
without torch), and the cards in model_cards/ match the embedded registry.
"""

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
from test_zoo import run_cli_without_torch
from typer.testing import CliRunner

from cfzoo.cards.model_cards import family_card, registry_families, write_family_cards
from cfzoo.cli import app
from cfzoo.export.zoo_writer import registry_entry
from cfzoo.manipulations import MANIPULATIONS, parameter_table
from cfzoo.paper import FAMILY_TITLES, table1
from cfzoo.zoo.registry import REGISTRY_NAME, HubSource, Registry, embedded_registry, load_registry

REPOSITORY = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPOSITORY / "checkpoints" / "cameras-seed0"
HUB = HubSource("cfzoo/detectors", "main")


def parsed(card_text_or_path):
    """huggingface_hub's own reading of a card. Imported here, not at collection: huggingface_hub fixes its cache
    path from HF_HOME at import, and conftest's isolated_homes sets HF_HOME per test."""
    from huggingface_hub import ModelCard

    if isinstance(card_text_or_path, Path):
        return ModelCard.load(card_text_or_path)
    return ModelCard(card_text_or_path)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A zoo folder whose registry holds the seed-0 training records of the embedded families (spam,
    cozzolino2017 and bayar2016 x8; the Xception records are left out, as the embedded zoo leaves them out).

    The cards read only the registry, so each model's files are small stand-ins whose sha256 the entry records."""
    zoo = tmp_path_factory.mktemp("zoo")
    (zoo / "models").mkdir()
    entries = []
    for path in sorted(CHECKPOINTS.glob("*.json")):
        record = json.loads(path.read_text())
        if record["family"] == "xception":
            continue
        files = [zoo / "models" / f"{record['id']}{suffix}" for suffix in (".onnx", ".grad.onnx")]
        for file in files:
            file.write_text(f"stand-in for {file.name}\n")
        entries.append(registry_entry(record, *files, embedded=False, hub=HUB))
    Registry(entries).write(zoo / REGISTRY_NAME)
    return zoo


@pytest.fixture(scope="module")
def registry(zoo):
    return Registry.read(zoo / REGISTRY_NAME)


@pytest.fixture
def runner():
    return CliRunner()


def test_front_matter_parses_with_huggingface_hub_and_carries_every_metric(registry):
    for family in ("spam", "bayar2016", "cozzolino2017"):
        entries = registry.select([family])
        card = parsed(family_card(family, registry).text)
        assert card.data.license == "mit" and card.data.library_name == "onnx"
        assert card.data.pipeline_tag == "image-classification"
        assert {"image-forensics", "onnx", family} <= set(card.data.tags)
        assert card.data.model_name == f"cfzoo-{family}"
        results = {(result.dataset_config, result.metric_type): result for result in card.data.eval_results}
        assert len(results) == 3 * len(entries)
        for entry in entries:
            for metric, key in (("accuracy", "acc"), ("fpr", "fpr"), ("tpr", "tpr")):
                result = results[(entry.task, metric)]
                assert result.metric_value == round(entry.metrics["test"][key], 2)
                assert result.task_type == "image-classification" and result.dataset_split == "test"
                assert "Google_Pixel5, Nikon_D5500" in result.dataset_name
                assert MANIPULATIONS[entry.task].title in result.task_name
        assert card.text.lstrip().startswith(
            f"# cfzoo {FAMILY_TITLES[family]}: detectors of global image manipulations"
        )


def test_card_body_states_contract_data_split_table1_training_and_files(registry):
    card = family_card("spam", registry)
    text = card.text
    entries = registry.select(["spam"])
    assert card.models == tuple(entry.id for entry in entries) and card.missing_tasks == ()
    assert "This card covers 8 of the 8 tasks." in text and "Not in the registry" not in text
    assert "input `image` float32 [N,3,128,128], RGB, values 0..255" in text and "output `logits` float32 [N,2]" in text
    assert "`<id>.grad.onnx`: inputs `image` (as above) and `label` int64 [N]" in text
    assert "soft (softmax-quantised) SPAM of Cozzolino2017" in text  # spam's companion is an approximation
    assert "s3_spam14hv, 338 values" in text
    devices = "Train devices: Apple_iPhone11, Apple_iPhoneX, Nikon_D200, Nikon_D70, Nikon_D70s; test devices: Google_Pixel5, Nikon_D5500."
    assert devices in text
    assert "| Nikon_D5500 | City100 in ngchc/CameraSR (photographs of printed postcards) | MIT |" in text
    assert "MANIFEST.csv" in text and "cfzoo's code and these model files: MIT." in text
    assert "All models:\n- C: 1\n- classifier: LinearSVC (squared hinge, L2) on standardised features" in text
    assert "Machine: CPU (2 cores), no GPU." in text
    for entry in entries:
        paper = table1(entry.task, "spam")
        ours = entry.metrics["test"]
        assert f"| {ours['acc']:.2f} (" in text and f"{ours['fpr']:.2f} ({paper['fpr']:.2f})" in text
        assert f"| `{entry.id}` | {entry.training['train_patches']:,} | {entry.training['test_patches']:,} |" in text
        for file in entry.files.values():
            assert f"| `{entry.id}` | `models/{file.name}` | {file.size:,} | `{file.sha256}` |" in text
    for row in parameter_table():  # every free manipulation parameter
        for key, value in row.items():
            if key in ("task", "manipulation", "difficulty"):
                continue
            assert f"{key.replace('_', ' ')}: " in text
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                assert f"{key.replace('_', ' ')}: {value}" in text
    limits = text.split("## Limits")[1].split("## How to use")[0]  # the measured ones first
    assert "FPR above 5 % on the test devices for `blur0.5` (14.28 %), `jpeg90` (31.13 %);" in limits
    assert (
        "more than 2 points under the paper's for `jpeg70` (97.54 against 99.99), `jpeg90` (73.97 against 90.90)"
        in limits
    )
    assert "- JPEG Q90: pristine camera photos are usually JPEGs already" in text
    assert "cfzoo pull spam-blur1.1" in text and "cfzoo detect photo.jpg -f spam" in text


def test_a_family_with_missing_tasks_lists_what_is_there_and_names_the_rest(registry):
    missing = ("jpeg90", "median3", "resize1.01")  # every variant of them
    registry = Registry([entry for entry in registry if entry.family != "bayar2016" or entry.task not in missing])
    card = family_card("bayar2016", registry)
    assert card.missing_tasks == ("jpeg90", "median3", "resize1.01")
    assert card.models == (
        "bayar2016-blur1.1",
        "bayar2016-blur0.5",
        "bayar2016-jpeg70",
        "bayar2016-median7",
        "bayar2016-resize1.5",
    )
    assert (
        "This card covers 5 of the 8 tasks. Not in the registry, so not described here: `jpeg90`, `median3`, `resize1.01`."
        in card.text
    )
    for task in card.missing_tasks:
        assert f"bayar2016-{task}" not in card.text
    assert len(parsed(card.text).data.eval_results) == 15
    assert "constrained 3@5x5" in card.text  # the architecture from the training record


def test_a_reduced_training_set_on_a_cpu_is_said(registry):
    """An Xception trained on a subset of the patches the other jpeg70 models used, on the CPU."""
    record_entry = registry.get("bayar2016-jpeg70")
    xception = replace(
        record_entry,
        id="xception-jpeg70",
        family="xception",
        training={
            **record_entry.training,
            "train_patches": 4000,
            "hyperparameters": {"steps": 600, "batch_size": 16, "architecture": "timm legacy_xception"},
        },
    )
    card = family_card("xception", Registry([*registry, xception]))
    assert card.models == ("xception-jpeg70",) and len(card.missing_tasks) == 7
    assert "| 4,000 of 43,008 |" in card.text
    assert "`xception-jpeg70` trained on a reduced set" in card.text and "Machine: CPU (2 cores), no GPU." in card.text
    alone = family_card("xception", Registry([xception]))  # nothing to compare with: no claim either way
    assert "reduced set" not in alone.text and "| 4,000 |" in alone.text


def test_models_trained_with_pristine_noise_say_what_noise_does_to_them(registry):
    base = registry.get("bayar2016-median7")
    noisy = replace(
        base, training={**base.training, "hyperparameters": {**base.training["hyperparameters"], "pristine_noise": 2.0}}
    )
    plain = registry.get("bayar2016-median3")
    text = family_card("bayar2016", Registry([noisy, plain])).text
    noise_lines = [line for line in text.splitlines() if line.startswith("- Noise: ")]
    assert len(noise_lines) == 1 and "`bayar2016-median7`" in noise_lines[0] and "median3" not in noise_lines[0]
    assert "- Noise: " not in family_card("bayar2016", Registry([plain])).text


def test_the_resizing_line_names_models_whose_train_set_kept_zoomed_photos(registry):
    base = registry.get("bayar2016-resize1.5")
    zoom_trained = replace(base, training={**base.training, "zoomed_train_photos": True})
    resize101 = registry.get("bayar2016-resize1.01")
    plain = replace(
        resize101, training={key: value for key, value in resize101.training.items() if key != "zoomed_train_photos"}
    )
    resizing = [
        line
        for line in family_card("bayar2016", Registry([zoom_trained, plain])).text.splitlines()
        if line.startswith("- Resizing: ")
    ]
    assert (
        len(resizing) == 1
        and "only from the test sets for `bayar2016-resize1.5`:" in resizing[0]
        and "resize1.01" not in resizing[0]
    )
    plain_line = [
        line
        for line in family_card("bayar2016", Registry([plain])).text.splitlines()
        if line.startswith("- Resizing: ")
    ]
    assert plain_line and "only from the test sets" not in plain_line[0]


def test_cards_are_deterministic(registry, tmp_path):
    entries = list(registry)
    random.Random(0).shuffle(entries)
    for family in registry_families(registry):
        assert family_card(family, registry).text == family_card(family, Registry(entries)).text
    first = {path.name: path.read_bytes() for _, path in write_family_cards(tmp_path / "a", registry=registry)}
    second = {
        path.name: path.read_bytes() for _, path in write_family_cards(tmp_path / "b", registry=Registry(entries))
    }
    assert first == second and sorted(first) == ["bayar2016.md", "cozzolino2017.md", "spam.md"]
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == sorted(first)  # no temporary files left


def test_cards_command_writes_parsable_cards_and_refuses_bad_families(runner, zoo, tmp_path):
    out = tmp_path / "cards"
    result = runner.invoke(app, ["cards", "--zoo", str(zoo), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert [item["family"] for item in written] == ["spam", "bayar2016", "cozzolino2017"]
    assert all(item["missing_tasks"] == [] and len(item["models"]) == 8 for item in written)
    for item in written:
        path = Path(item["path"])
        assert path.parent == out and path.name == f"{item['family']}.md"
        from huggingface_hub.repocard import metadata_load

        metadata = metadata_load(path)
        assert metadata["license"] == "mit" and metadata["model-index"][0]["name"] == f"cfzoo-{item['family']}"
        assert len(metadata["model-index"][0]["results"]) == len(item["models"])
        assert parsed(path).data.library_name == "onnx"

    result = runner.invoke(app, ["cards", "--zoo", str(zoo), "--out", str(tmp_path / "x"), "--family", "xception"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no xception models in the registry; train and export some (cfzoo train DATA -f xception --all, then cfzoo export)\n"
    )
    assert not (tmp_path / "x").exists()
    result = runner.invoke(app, ["cards", "--zoo", str(zoo), "--family", "resnet"])
    assert result.exit_code == 1 and result.stderr.startswith("error: unknown family 'resnet'; choose from: spam,")
    result = runner.invoke(app, ["cards", "--zoo", str(tmp_path / "nowhere")])
    assert (
        result.exit_code == 1
        and "registry.json does not exist; give a zoo folder written by `cfzoo export --zoo DIR`" in result.stderr
    )


def test_cards_command_defaults_to_every_model_cfzoo_knows(runner, zoo, tmp_path):
    user_zoo = Path(os.environ["CFZOO_HOME"]) / "zoo"
    user_zoo.mkdir(parents=True)
    (user_zoo / REGISTRY_NAME).write_text((zoo / REGISTRY_NAME).read_text())
    result = runner.invoke(app, ["cards", "--out", str(tmp_path / "cards"), "--family", "cozzolino2017"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "cards" / "cozzolino2017.md"
    assert result.stdout == f"{path}: 8 models\n"
    assert path.read_text() == family_card("cozzolino2017", load_registry()).text


def test_cards_command_runs_without_torch(zoo, registry, tmp_path):
    out = tmp_path / "cards"
    run_cli_without_torch(["cards", "--zoo", str(zoo), "--out", str(out), "--family", "spam"], tmp_path / "home")
    assert (out / "spam.md").read_text() == family_card("spam", registry).text


def test_the_published_cards_match_the_embedded_registry():
    """model_cards/ is what `cfzoo cards --zoo cfzoo/zoo/embedded` writes: regenerate it after exporting models."""
    registry = embedded_registry()
    families = registry_families(registry)
    assert families
    for family in families:
        path = REPOSITORY / "model_cards" / f"{family}.md"
        assert path.is_file(), f"{path} is missing; run `cfzoo cards --zoo cfzoo/zoo/embedded`"
        assert path.read_text() == family_card(family, registry).text, (
            f"{path} is stale; run `cfzoo cards --zoo cfzoo/zoo/embedded`"
        )


def test_weights_that_travelled_quantised_are_named_on_the_card(registry):
    base = registry.get("bayar2016-jpeg70")
    packed = replace(base, training={**base.training, "weights_transport": "int8 per output channel"})
    plain = registry.get("bayar2016-median7")
    lines = [
        line for line in family_card("bayar2016", Registry([packed, plain])).text.splitlines() if "came back" in line
    ]
    assert (
        len(lines) == 1
        and lines[0].startswith("`bayar2016-jpeg70`: the weights came back")
        and "int8 per output channel" in lines[0]
    )
    assert "median7" not in lines[0]
    assert "came back" not in family_card("bayar2016", Registry([plain])).text


def test_a_template_field_that_is_not_given_fails_instead_of_printing_nothing(registry):
    import jinja2
    from huggingface_hub import ModelCardData

    from cfzoo.cards.card_text import render_card
    from cfzoo.cards.model_cards import zoo_card

    entries = list(registry)[:2]
    readme = zoo_card("someone/models", entries, ["spam.md"])
    assert readme.startswith("---\nlibrary_name: onnx\nlicense: mit\n") and "# someone/models" in readme
    assert f"| `{entries[0].id}` |" in readme and "Model cards: [spam](model_cards/spam.md)." in readme
    with pytest.raises(jinja2.UndefinedError, match="'example' is undefined"):
        render_card(
            "zoo_readme.md.j2",
            ModelCardData(license="mit"),
            repo_id="r",
            paper_url="u",
            patch=128,
            models=[],
            card_links=[],
        )


def test_a_family_with_variants_shows_what_robustness_costs_task_by_task(registry):
    """The wild records in checkpoints/cameras-seed0 become a table beside their standard models; the robustness
    figures tools/record_robustness.py writes (here one model's, set by hand) fill their columns."""
    wild = [entry for entry in registry.select(["spam"], variants=["wild"])]
    assert wild, "checkpoints/cameras-seed0 holds the spam wild variants"
    summary = {
        "patches": 64,
        **{"worst_case_tpr_eps1": 12.5, "worst_case_tpr_eps2": 3.125, "worst_case_tpr_eps4": 0.0},
        **{"recompressed_tpr_q95": 90.625, "recompressed_tpr_q90": 81.25, "recompressed_tpr_q80": 70.3125},
        **{"attacked_recompressed_tpr_q95": 50.0, "attacked_recompressed_tpr_q90": 40.0},
        "attacked_recompressed_tpr_q80": 30.0,
    }
    first = wild[0]
    measured = Registry(
        replace(entry, metrics={**entry.metrics, "robustness_summary": summary}) if entry.id == first.id else entry
        for entry in registry
    )
    card = family_card("spam", measured).text
    assert "## Variants: standard, wild and robust" in card
    section = card.split("## Variants: standard, wild and robust")[1].split("## What the detector is")[0]
    rows = {
        line.split(" | ")[0].strip("| `"): line.split(" | ") for line in section.splitlines() if line.startswith("| `")
    }
    for entry in wild:
        standard = entry.id.removesuffix("-wild")
        assert rows[entry.id][1] == "wild" and rows[standard][1] == "standard"
        assert rows[entry.id][2] == f"{entry.metrics['test']['acc']:.2f}"
        assert rows[entry.id][4] == f"{entry.metrics['test_wild']['acc']:.2f}" and rows[standard][4] == "-"
    assert rows[first.id][5:12] == ["12.50", "3.12", "0.00", "90.62", "81.25", "70.31", "30.00"]
    without = {entry.task for entry in registry.select(["spam"])} - {entry.task for entry in wild}
    assert all(f"spam-{task}" not in rows for task in without)  # tasks without variants stay out of the table
