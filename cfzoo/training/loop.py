"""A seeded training loop and batched inference for the torch detectors."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cfzoo.errors import CfzooError
from cfzoo.files import write_atomically
from cfzoo.training.adversarial import AdversarialTraining, adversarial_batch

StepCallback = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass(frozen=True)
class NetworkSchedule:
    """How long and how fast a network trains."""

    steps: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    #: Random rotations by multiples of 90 degrees and mirror flips of every training patch (the 8 symmetries of
    #: the square). The manipulations are isotropic, so labels hold; it keeps the network from keying on the
    #: orientation of the train cameras' sensor and demosaicing patterns.
    dihedral_augmentation: bool = False
    #: Largest standard deviation (gray levels) of the rounded Gaussian noise added to each pristine training
    #: patch, the deviation drawn uniformly from 0 to it per patch; 0: none. Noise is none of the eight
    #: manipulations, so a noisy photo is still pristine; a detector that never saw one calls it manipulated.
    pristine_noise: float = 0.0
    #: Decay of an exponential moving average of the weights (and batch-norm statistics), updated after every step;
    #: the trained model is that average. 0: off. Gowal et al. 2020 found it to help adversarial training;
    #: docs/robustness.md measures it on median7.
    weight_average: float = 0.0

    def identity(self) -> dict:
        """The settings as a run's snapshot keeps them; ``weight_average`` only when set, so that snapshots taken
        before it existed still resume."""
        settings = asdict(self)
        if not self.weight_average:
            del settings["weight_average"]
        return settings


def to_tensor(patches: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [N,H,W,3] patches -> float32 [N,3,H,W] with values 0..255 (the model contract)."""
    pixels = torch.from_numpy(np.array(patches))  # a copy: memory maps are read-only
    return pixels.to(device).permute(0, 3, 1, 2).float()


def training_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def dihedral_variants(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each [N,C,H,W] image rotated by a random multiple of 90 degrees, then mirrored with probability 1/2."""
    turns = rng.integers(0, 4, size=len(images))
    mirrors = rng.integers(0, 2, size=len(images)).astype(bool)
    variants = []
    for image, turn, mirror in zip(images, turns, mirrors):
        image = torch.rot90(image, int(turn), dims=(1, 2))
        variants.append(torch.flip(image, dims=(2,)) if mirror else image)
    return torch.stack(variants)


def with_pristine_noise(
    images: torch.Tensor, labels: np.ndarray, largest_sigma: float, rng: np.random.Generator
) -> torch.Tensor:
    """``images`` (0..255) with rounded Gaussian noise of a random deviation in [0, largest_sigma] added to each
    pristine one (label 0), still integers in 0..255. Noise is drawn for the pristine rows only, in float32."""
    pristine = torch.from_numpy(np.flatnonzero(labels == 0)).to(images.device)
    sigmas = rng.uniform(0.0, largest_sigma, size=len(pristine)).astype(np.float32)
    noise = rng.standard_normal((len(pristine), *images.shape[1:]), dtype=np.float32) * sigmas[:, None, None, None]
    noisy = images.clone()
    noisy[pristine] = (images[pristine] + torch.from_numpy(noise).to(images.device)).round().clamp(0, 255)
    return noisy


def training_order(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` sample indices, class-balanced, shuffled, epoch after epoch without repeats within an epoch."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == label) for label in (0, 1)]
    per_class = count // 2
    chosen = []
    for indices in by_class:
        repeats = math.ceil(per_class / len(indices))
        chosen.append(np.concatenate([rng.permutation(indices) for _ in range(repeats)])[:per_class])
    order = np.stack(chosen, axis=1).ravel()  # interleave so every batch is balanced
    return order


class WeightAverage:
    """An exponential moving average of a model's floating-point state (weights and batch-norm statistics), with
    the usual warm-up: the decay after step t is min(decay, (1 + t) / (10 + t)), so early steps do not dominate."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {
            name: value.detach().clone() for name, value in model.state_dict().items() if value.is_floating_point()
        }

    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if name in self.state:
                    self.state[name].mul_(decay).add_(value.detach(), alpha=1 - decay)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict({**model.state_dict(), **self.state})


class Snapshots:
    """Where a run saves, every ``every`` steps, all it needs to continue (weights, optimiser and schedule state,
    random generators, losses, seconds spent): one safetensors file, replaced atomically, so a run killed at any
    moment continues from its last snapshot with the numbers of an uninterrupted run. With ``resume``, training
    starts from the snapshot at ``path`` when there is one; otherwise from step 0."""

    def __init__(self, path: str | Path, every: int = 100, resume: bool = False):
        if every < 1:
            raise CfzooError(f"snapshots are taken every N steps with N >= 1, got {every}")
        self.path, self.every, self.resume = Path(path), every, resume
        #: Seconds the steps restored from the snapshot took (0 when starting afresh).
        self.earlier_seconds = 0.0

    def save(
        self,
        step: int,
        model,
        optimiser,
        scheduler,
        generator,
        losses: list[float],
        identity: dict,
        seconds: float,
        history: dict[str, list[float]] | None = None,
        average: WeightAverage | None = None,
    ) -> None:
        from safetensors.torch import save_file

        tensors = {f"model.{name}": value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
        if average is not None:
            tensors.update({f"average.{name}": value.cpu().contiguous() for name, value in average.state.items()})
        optimiser_state = optimiser.state_dict()
        for index, values in optimiser_state["state"].items():
            for name, value in values.items():
                tensors[f"optimiser.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        tensors["torch_rng"] = torch.get_rng_state()
        state = {
            "step": step,
            "identity": identity,
            "losses": losses,
            "seconds": seconds,
            "param_groups": optimiser_state["param_groups"],
            "scheduler": scheduler.state_dict(),
            "numpy_rng": generator.bit_generator.state,
            "history": history or {},
        }
        write_atomically(self.path, lambda path: save_file(tensors, str(path), metadata={"state": json.dumps(state)}))

    def restore(
        self,
        model,
        optimiser,
        scheduler,
        generator,
        identity: dict,
        history: dict[str, list[float]] | None = None,
        average: WeightAverage | None = None,
    ) -> tuple[int, list[float]]:
        """(next step, losses so far) after loading the snapshot into the given objects (and its curves into
        ``history``); (0, []) with none."""
        if not (self.resume and self.path.exists()):
            return 0, []
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as stored:
                state = json.loads(stored.metadata()["state"])
                tensors = {name: stored.get_tensor(name) for name in stored.keys()}
        except Exception as error:  # safetensors raises its own types for damaged files
            raise CfzooError(
                f"the snapshot {self.path} cannot be read ({error}); delete it to train from step 0"
            ) from None
        identity = json.loads(json.dumps(identity))  # as stored: tuples (the adversary's eps) read back as lists
        if state["identity"] != identity:
            changed = sorted(key for key in identity if state["identity"].get(key) != identity[key])
            raise CfzooError(
                f"the snapshot {self.path} belongs to a run with other settings ({', '.join(changed)}); "
                "train with its settings again, or delete it to start afresh"
            )
        device = model_device(model)
        model.load_state_dict(
            {name[len("model.") :]: value for name, value in tensors.items() if name.startswith("model.")}
        )
        optimiser_state: dict = {"state": {}, "param_groups": state["param_groups"]}
        for name, value in tensors.items():
            if name.startswith("optimiser."):
                _, index, key = name.split(".", 2)
                value = value if key == "step" else value.to(device)
                optimiser_state["state"].setdefault(int(index), {})[key] = value
        optimiser.load_state_dict(optimiser_state)
        if average is not None:
            for name in average.state:
                average.state[name] = tensors[f"average.{name}"].to(device)
        scheduler.load_state_dict(state["scheduler"])
        generator.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(tensors["torch_rng"])
        self.earlier_seconds = state["seconds"]
        if history is not None:
            history.update(state.get("history", {}))
        return state["step"], state["losses"]


def train_network(
    model: nn.Module,
    patches: np.ndarray,
    labels: np.ndarray,
    schedule: NetworkSchedule,
    seed: int,
    on_step: StepCallback | None = None,
    snapshots: Snapshots | None = None,
    adversary: AdversarialTraining | None = None,
    history: dict[str, list[float]] | None = None,
) -> list[float]:
    """Train ``model`` (on whatever device it is) with AdamW, linear warm-up then cosine decay, cross-entropy;
    returns the loss per step.

    Models with an ``after_step()`` method (Bayar2016's constraint) have it called after every update. With
    ``snapshots``, the run saves its state every few steps and, when asked to resume, continues from the last one.
    With ``adversary``, the network also trains on PGD examples of part of every batch (Madry's or TRADES's
    objective, :mod:`cfzoo.training.adversarial`), and ``history`` receives per step the share of them that fooled
    the network (``attack_success``) and the accuracy on the clean rows it trained on (``clean_accuracy``).
    """
    torch.manual_seed(seed)
    order = training_order(labels, schedule.steps * schedule.batch_size, seed)
    augmentation_rng = np.random.default_rng([seed, 1])
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=schedule.learning_rate,
        weight_decay=schedule.weight_decay,
    )

    def learning_rate_factor(step: int) -> float:
        if step < schedule.warmup_steps:
            return (step + 1) / schedule.warmup_steps
        progress = (step - schedule.warmup_steps) / max(1, schedule.steps - schedule.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, learning_rate_factor)
    loss_function = nn.CrossEntropyLoss()
    after_step = getattr(model, "after_step", None)
    losses = []
    device = model_device(model)
    on_gpu = device.type == "cuda"
    if on_gpu:  # CPU training keeps float32 and the default layout, so its numbers do not move
        torch.backends.cudnn.benchmark = True
        model.to(memory_format=torch.channels_last)
    model.train()
    identity = {"schedule": schedule.identity(), "seed": seed, "patches": len(labels)}
    curves: dict[str, list[float]] = {"attack_success": [], "clean_accuracy": []} if adversary else {}
    if adversary is not None:
        identity["adversary"] = adversary.identity()
    average = WeightAverage(model, schedule.weight_average) if schedule.weight_average else None
    first_step = 0
    if snapshots is not None:
        first_step, losses = snapshots.restore(model, optimiser, scheduler, augmentation_rng, identity, curves, average)
    started = time.perf_counter()
    for step in range(first_step, schedule.steps):
        batch = np.sort(order[step * schedule.batch_size : (step + 1) * schedule.batch_size])
        images = to_tensor(patches[batch], device)
        if schedule.dihedral_augmentation:
            images = dihedral_variants(images, augmentation_rng)
        if schedule.pristine_noise > 0:
            images = with_pristine_noise(images, labels[batch], schedule.pristine_noise, augmentation_rng)
        targets = torch.from_numpy(labels[batch].astype(np.int64)).to(device)
        if on_gpu:
            images = images.contiguous(memory_format=torch.channels_last)
        if adversary is None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
                loss = loss_function(model(images), targets)
        else:
            attacked = adversarial_batch(model, images, targets, adversary, augmentation_rng)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
                logits = model(attacked.images)
                loss = attacked.loss(logits, targets)
            curves["attack_success"].append(attacked.fooled)
            curves["clean_accuracy"].append(float(attacked.clean_correct(logits, targets).mean()))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        if after_step is not None:
            after_step()
        if average is not None:
            average.update(model, step)
        losses.append(loss.item())
        if snapshots is not None and (step + 1) % snapshots.every == 0 and step + 1 < schedule.steps:
            seconds = snapshots.earlier_seconds + time.perf_counter() - started
            snapshots.save(
                step + 1, model, optimiser, scheduler, augmentation_rng, losses, identity, seconds, curves, average
            )
        if on_step is not None:
            on_step(step + 1, schedule.steps, losses[-1])
    if average is not None:
        average.copy_to(model)
    model.eval()
    if history is not None:
        history.update(curves)
    return losses


@torch.no_grad()
def manipulated_probability(
    model: nn.Module, patches: np.ndarray, batch_size: int = 32, on_batch: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """Softmax probability of class 1 (manipulated) for every patch, in eval mode."""
    model.eval()
    device = model_device(model)
    scores = np.empty(len(patches), dtype=np.float64)
    for start in range(0, len(patches), batch_size):
        logits = model(to_tensor(patches[start : start + batch_size], device))
        scores[start : start + len(logits)] = torch.softmax(logits.double(), dim=1)[:, 1].cpu().numpy()
        if on_batch is not None:
            on_batch(min(start + batch_size, len(patches)), len(patches))
    return scores
