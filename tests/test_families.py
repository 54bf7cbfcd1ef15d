"""The family registry: one object per family holds what differs between families, nothing outside branches on
a family's name, and a new family is one class that trains, exports and runs in the runtime like the others."""

import ast
from pathlib import Path

import numpy as np
import pytest

import cfzoo
from cfzoo.errors import CfzooError
from cfzoo.families import FAMILIES, NetworkFamily, export_checkpoint, get_family, load_checkpoint, train_detector
from cfzoo.families.base import CardText
from cfzoo.paper import FAMILY_IDS
from cfzoo.zoo.registry import PROBABILITY_SCORE, SVM_DECISION_SCORE

PACKAGE = Path(cfzoo.__file__).parent


def test_the_registry_holds_the_papers_families_in_table_order_and_says_what_each_score_is():
    assert tuple(FAMILIES) == FAMILY_IDS
    for name, family in FAMILIES.items():
        assert family.name == name and family.card.method and family.card.reference
        assert (family.score, family.threshold) in ((SVM_DECISION_SCORE, 0.0), (PROBABILITY_SCORE, 0.5))
    assert get_family("spam").score == SVM_DECISION_SCORE
    with pytest.raises(CfzooError, match="unknown family 'svm'; choose one of: spam, bayar2016"):
        get_family("svm")


def family_name_comparisons(path: Path) -> list[str]:
    """``x == "spam"``, ``x != "xception"``, ``x in ("bayar2016", ...)`` in a module: a branch on a family's name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            names = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            if any(isinstance(name, ast.Constant) and name.value in FAMILY_IDS for name in names):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_module_outside_the_families_branches_on_a_family_name():
    modules = [path for path in PACKAGE.rglob("*.py") if "families" not in path.relative_to(PACKAGE).parts]
    assert len(modules) > 60
    assert [place for path in modules for place in family_name_comparisons(path)] == []


torch = pytest.importorskip("torch")


class TinyNet(torch.nn.Module):
    """Not one of cfzoo's architectures: a 3x3 high-pass bank on the red-minus-green residual, max-pooled."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.width = width
        self.residual = torch.nn.Conv2d(1, width, 3, padding=1)
        self.classifier = torch.nn.Linear(width, 2)

    def forward(self, image):
        residual = (image[:, 0:1] - image[:, 1:2]) / 255.0
        return self.classifier(torch.amax(torch.tanh(self.residual(residual)), dim=(2, 3)))

    def describe(self) -> dict:
        return {
            "architecture": f"red-green residual -> {self.width} 3x3 filters -> tanh -> max pool -> linear",
            "width": self.width,
        }


class TinyFamily(NetworkFamily):
    """What adding a family takes: this class, and an entry in FAMILIES."""

    name = "tiny"
    card = CardText("a toy network for the test", "none")
    schedule = {
        "steps": 4,
        "batch_size": 8,
        "learning_rate": 1e-2,
        "dihedral_augmentation": False,
        "pristine_noise": 0.0,
    }

    def network_class(self):
        return TinyNet

    def new_network(self, hyperparameters=None):
        return TinyNet(**({} if hyperparameters is None else {"width": hyperparameters["width"]}))


def test_a_new_family_is_one_class_that_trains_exports_and_runs_in_the_runtime(
    sample_dataset, tmp_path, monkeypatch, photo
):
    from cfzoo.training.run import TrainingPlan

    monkeypatch.setitem(FAMILIES, "tiny", TinyFamily())
    plan = TrainingPlan(family="tiny", task="median3", seed=1, max_train_patches=32, max_test_patches=32)
    record = train_detector(plan, sample_dataset, tmp_path / "checkpoints", tmp_path / "cache")
    assert record["hyperparameters"]["steps"] == 4 and record["hyperparameters"]["width"] == 4
    assert (
        record["score"] == PROBABILITY_SCORE
        and record["threshold"] == 0.5
        and set(record["metrics"]["test"]) >= {"fpr", "tpr"}
    )

    _, network = load_checkpoint(tmp_path / "checkpoints", "tiny-median3")
    assert isinstance(network, TinyNet) and not network.training
    detector_path, companion_path = export_checkpoint(tmp_path / "checkpoints", "tiny-median3", tmp_path / "onnx")
    assert companion_path.name == "tiny-median3.grad.onnx"

    model = cfzoo.load_detector(detector_path, task="median3")
    patches = np.ascontiguousarray(
        photo[:256, :256].reshape(2, 128, 2, 128, 3).transpose(0, 2, 1, 3, 4).reshape(4, 128, 128, 3)
    )
    with torch.no_grad():
        expected = torch.softmax(network(torch.from_numpy(patches).permute(0, 3, 1, 2).float()), dim=1)[:, 1].numpy()
    np.testing.assert_allclose(model.predict_proba(patches), expected, atol=1e-5)
    attacked = cfzoo.attack(model, patches, eps=8, method="fgsm")
    assert attacked.dtype == np.uint8 and 0 < np.abs(attacked.astype(int) - patches).max() <= 8
    assert (
        model.predict_proba(attacked).mean() < model.predict_proba(patches).mean()
    )  # the companion's gradient points the right way
