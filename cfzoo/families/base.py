"""What every detector family knows: how it is built, trained, scored, saved, exported and described.

:class:`Family` is the interface the training, evaluation, export and model-card code calls; they never ask
which family they hold. :class:`NetworkFamily` implements it for torch networks trained with
:func:`cfzoo.training.loop.train_network`; a new network family subclasses it in one file and adds itself to
:data:`cfzoo.families.FAMILIES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cfzoo.callbacks import StatusCallback
from cfzoo.data import PatchSet
from cfzoo.errors import CfzooError
from cfzoo.zoo.registry import PROBABILITY_SCORE


@dataclass(frozen=True)
class CardText:
    """What a family's model card says of the method."""

    method: str  # what the detector is, one sentence
    reference: str  # the method's original publication
    architecture: str | None = None  # for families whose training records carry none


class Family(ABC):
    """One detector family. Subclasses set the class attributes and implement the abstract methods."""

    name: str
    card: CardText
    #: Scores above this mean manipulated (the training record's ``threshold``).
    threshold: float = 0.5
    #: What the score is, as the training record and the registry entry say (:data:`cfzoo.zoo.registry.PROBABILITY_SCORE`).
    score: str = PROBABILITY_SCORE
    #: The score in terms of the ONNX graph's logits, as the exported files' metadata says.
    graph_score: str = "softmax(logits)[:,1] (the probability of class 1)"
    #: Resize tasks: whether the train set keeps the photos a camera upsampled itself, unless the plan says.
    zoomed_train_photos: bool = False
    #: Whether an export into the package's own zoo ships the files inside the package (too large otherwise).
    embedded: bool = True

    #: Whether the family trains by gradient descent, so that it can be trained adversarially (``robust`` variants).
    adversarial_training: bool = False
    #: Whether ``--width`` can widen the network (:attr:`cfzoo.training.run.TrainingPlan.network_width`).
    widens: bool = False

    @abstractmethod
    def train(
        self, plan, train_set: PatchSet, rows: np.ndarray, status: StatusCallback, snapshots=None, history=None
    ) -> tuple[object, dict, list[float]]:
        """(detector, hyper-parameters for the record, loss curve) trained on the chosen patches; a family whose
        training takes long saves and resumes through ``snapshots`` (:class:`cfzoo.training.loop.Snapshots`). An
        adversarially trained one puts its curves into ``history`` (:func:`cfzoo.training.loop.train_network`)."""

    @abstractmethod
    def score_patches(self, detector, patch_set: PatchSet, rows: np.ndarray, status: StatusCallback) -> np.ndarray:
        """The detector's score of the chosen patches (compare with :attr:`threshold`)."""

    @abstractmethod
    def save(self, detector, path: Path) -> None:
        """Write the detector's weights as safetensors."""

    @abstractmethod
    def load(self, path: Path, record: dict):
        """The detector whose weights :meth:`save` wrote, as its training ``record`` describes it (on the CPU)."""

    @abstractmethod
    def check(self, detector) -> None:
        """A one-line :class:`CfzooError` when ``detector`` is not one of this family's."""

    @abstractmethod
    def export_graphs(self, detector) -> tuple[object, object]:
        """(detector ModelProto, gradient companion ModelProto), without metadata."""

    def metadata(self, detector, kind: str) -> dict[str, str]:
        """Metadata a file of ``kind`` (detector, gradient) carries besides the contract's."""
        return {}

    def decision_text(self, scores: list[str]) -> str:
        """The model card's sentence on when a patch is called manipulated, given the entries' ``score > t``."""
        return "a patch is called manipulated when " + " or ".join(f"`{score}`" for score in scores) + "."

    #: The model card's note on what the gradient companion computes.
    companion_note: str = " The companion computes the same logits as the detector."


class NetworkFamily(Family):
    """A torch network trained by :func:`cfzoo.training.loop.train_network` and exported as it is."""

    #: The schedule a plan's unset fields take (steps, batch_size, learning_rate, dihedral_augmentation, pristine_noise).
    schedule: dict
    #: What fine-tuning the standard model (a robust variant always, a wild one from ``--start-from``) changes in
    #: :attr:`schedule`.
    fine_tune_schedule: dict = {"steps": 600, "learning_rate": 1e-4}
    adversarial_training = True

    @abstractmethod
    def new_network(self, hyperparameters: dict | None = None):
        """An untrained network: the current design, or the one a checkpoint's recorded ``hyperparameters`` describe."""

    @abstractmethod
    def network_class(self) -> type:
        """The torch module class of this family's detectors."""

    def initial_network(
        self, plan, train_set: PatchSet, rows: np.ndarray, status: StatusCallback
    ) -> tuple[object, dict]:
        """(network training starts from, what the record says of it)."""
        network = self.new_network()
        return network, network.describe()

    def train(self, plan, train_set, rows, status, snapshots=None, history=None):
        import torch

        from cfzoo.training.adversarial import AdversarialTraining
        from cfzoo.training.loop import NetworkSchedule, train_network, training_device
        from cfzoo.training.run import RowView

        torch.manual_seed(plan.seed)
        fine_tune = plan.start_from is not None
        if fine_tune:
            model, described = self.standard_network(plan)
        else:
            model, described = self.initial_network(plan, train_set, rows, status)
            if plan.from_scratch:  # a family whose start is not random (Cozzolino2017: from the SVM) says its own
                described.setdefault("initialisation", "a new network, trained adversarially from the start")
        defaults = {**self.schedule, **(self.fine_tune_schedule if fine_tune else {})}
        adversary = None
        if plan.variant == "robust":
            adversary = AdversarialTraining(
                eps=plan.adversary_eps or AdversarialTraining.eps, trades_beta=plan.trades_beta
            )
        schedule = NetworkSchedule(
            steps=plan.steps or defaults["steps"],
            batch_size=plan.batch_size or defaults["batch_size"],
            learning_rate=plan.learning_rate or defaults["learning_rate"],
            dihedral_augmentation=(
                defaults["dihedral_augmentation"] if plan.dihedral_augmentation is None else plan.dihedral_augmentation
            ),
            pristine_noise=defaults["pristine_noise"] if plan.pristine_noise is None else plan.pristine_noise,
            weight_average=plan.weight_average,
        )
        model.to(training_device())
        losses = train_network(
            model,
            RowView(train_set.patches, rows),
            train_set.labels[rows],
            schedule,
            plan.seed,
            on_step=lambda step, total, loss: status("train", step, total),
            snapshots=snapshots,
            adversary=adversary,
            history=history,
        )
        hyper = {**asdict(schedule), "optimiser": "AdamW, linear warm-up, cosine decay", **described}
        if adversary is not None:
            hyper["adversarial_training"] = {
                **adversary.identity(),
                "eps": list(adversary.eps),  # as the JSON record holds it
                "attack": (
                    "integer PGD: random integer start, signed steps of 2.5 eps / steps, the gradient at the rounded "
                    "iterate, the rounded iterate with the highest loss kept"
                ),
                "objective": adversary.objective_text(),
            }
        return model, hyper, losses

    def standard_network(self, plan) -> tuple[object, dict]:
        """(the standard model a variant fine-tunes, what the record says of it), from ``plan.start_from``."""
        from cfzoo.families.checkpoints import load_checkpoint
        from cfzoo.files import file_sha256

        standard_id = f"{plan.family}-{plan.task}"
        _, model = load_checkpoint(plan.start_from, standard_id)
        weights = Path(plan.start_from) / f"{standard_id}.safetensors"
        # the standard model's schedule stays in its own record: this run's schedule is the fine-tuning's
        return model, {
            "initialisation": f"fine-tuned from {standard_id} (safetensors sha256 {file_sha256(weights)})",
            **model.describe(),
        }

    def score_patches(self, detector, patch_set, rows, status):
        from cfzoo.training.loop import manipulated_probability, training_device
        from cfzoo.training.run import RowView

        detector.to(training_device())
        return manipulated_probability(
            detector, RowView(patch_set.patches, rows), on_batch=lambda done, total: status("test", done, total)
        )

    def save(self, detector, path):
        from safetensors.torch import save_file

        save_file(
            {name: tensor.detach().cpu().contiguous() for name, tensor in detector.state_dict().items()}, str(path)
        )

    def load(self, path, record):
        from safetensors.torch import load_file

        network = self.new_network(record.get("hyperparameters", {}))
        network.load_state_dict(load_file(str(path)))
        return network.eval()

    def check(self, detector):
        expected = self.network_class()
        if not isinstance(detector, expected):
            raise CfzooError(f"a {self.name} detector is a {expected.__name__} module, got {type(detector).__name__}")

    def export_graphs(self, detector):
        from cfzoo.export.onnx_export import export_gradient, export_module

        return export_module(detector), export_gradient(detector)
