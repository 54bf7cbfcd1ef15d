"""GAN restoration of median-filtered images (the paper's Section III-C and Table V, after Kim et al. 2018).

The generator takes a median-filtered image and adds a learned residual that puts back the fine structure
the filter removed; it is trained against a discriminator that tells pristine patches from restored ones.
The paper trains it twice per task: with Kim 2018's discriminator (``kim``) and with a VGG-style one
(``vgg``). Kim 2018's layer tables were not available to us, so every number below is our choice, made
to keep the generator small enough to ship in the package (< 1 MB of ONNX) and to train on a CPU:

* :class:`KimGenerator`: fully convolutional, 3x3 convolutions, ``width`` = 48 channels; a head
  convolution, ``blocks`` = 4 residual blocks (conv-ReLU-conv plus identity), a long skip over the blocks,
  and a tail convolution to 3 channels whose output, in units of 16 gray levels, is added to the input;
  the sum is clamped to 0..255. The tail starts at zero, so the untrained generator returns its input
  unchanged. (With the residual in units of 255, Adam's first full-rate steps moved outputs by several
  gray levels, more than median3 changes, and the pixel loss spiked to 3x the input's.) No batch norm
  (train and eval behave alike, any batch size works). Replicate padding (the median filter's own border
  rule). 168,915 parameters, 0.69 MB as ONNX. Size rules: any N, H, W >= 1, output the same size; an
  output pixel depends on the input within :attr:`KimGenerator.receptive_radius` = 10 pixels.
* :class:`KimDiscriminator`: a compact forensic CNN: a fixed median-filter-residual layer (the image
  minus its own 3x3 median, per channel: what median filtering leaves nearly zero), a 5x5 convolution,
  three stride-2 3x3 convolutions (32-64-64-128 channels), global average pooling, one linear logit.
* :class:`VGGDiscriminator`: VGG-style, from scratch: four stages of two 3x3 convolutions, the second with
  stride 2, widths 32-64-128-256 (half of VGG's), LeakyReLU 0.2, global average pooling (any crop size),
  a hidden linear layer of 256 and one logit.

Loss of the generator G on a median-filtered patch x with pristine partner y (:class:`LossWeights`)::

    pixel * MSE(G(x), y) / MSE(x, y)  +  perceptual * sum_l |f_l(G(x)) - f_l(y)|^2 / |f_l(y)|^2  +  adversarial * BCE(D(G(x)), pristine)

* pixel fidelity is relative to the filtered input (detached): 1.0 means no gain, and the PSNR gain over
  the input is -10 log10 of the term, whatever the task;
* the perceptual term compares the discriminator's own intermediate features (feature matching). No
  ImageNet VGG weights can be downloaded here, and a cfzoo detector's features would put the very
  detectors of Table V into training (a white-box attack, not restoration); the discriminator's features
  are trained to separate pristine from restored statistics, which is what "perceptual" means for a
  forensic observer. Each layer's squared distance is divided by the pristine features' energy;
* the adversarial term is the non-saturating GAN loss. The discriminator is trained with BCE on pristine
  patches (label 1) and restored ones (label 0). It sees restored patches rounded to integers (with a
  straight-through gradient), as every detector sees them after the uint8 output.
* The adversarial and perceptual weights ramp up linearly over the first quarter of the steps, so the
  generator first learns plain restoration (stable start, as in SRGAN-style training).

Data: aligned pairs from the task's patch set on the train devices (:func:`cfzoo.data.aligned_pairs`): median
filtering keeps the geometry, so :func:`cfzoo.data.build_patch_set` cuts the pristine and the filtered
patch at the same positions. Training takes a random ``crop`` x ``crop`` window (default 48) at the same
place in both, a seventh of the cost of whole 128-pixel patches; the generator's 21-pixel receptive field
fits well inside. Adam (beta1 = 0.5, beta2 = 0.999) for both networks, learning rate 2e-4 after a linear
warm-up of 100 steps, batch 16, 6000 steps (about an hour on the shared 2-core CPU).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cfzoo._version import __version__
from cfzoo.callbacks import StatusCallback
from cfzoo.data import (
    CameraDataset,
    PatchSet,
    PatchSetSpec,
    build_patch_set,
    split_devices,
)
from cfzoo.errors import CfzooError
from cfzoo.files import write_atomically
from cfzoo.patches import PATCHES_PER_IMAGE
from cfzoo.training.loop import to_tensor, training_device
from cfzoo.training.run import loss_summary, training_data_digest, training_machine
from cfzoo.zoo.restorers import DISCRIMINATORS, check_restorer, restorer_id

# --- networks ---------------------------------------------------------------------------------


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="replicate")


class _ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.first, self.second = _conv3x3(width, width), _conv3x3(width, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.second(F.relu(self.first(features)))


class KimGenerator(nn.Module):
    """Median-filtered RGB [N,3,H,W] 0..255 -> restored RGB [N,3,H,W] 0..255 (float, clamped).

    Output = input + learned residual; any H, W >= 1 (see the module's notes)."""

    RESIDUAL_SCALE = 16.0  # gray levels per unit of the tail's output

    def __init__(self, width: int = 48, blocks: int = 4):
        super().__init__()
        self.width, self.blocks = width, blocks
        self.head = _conv3x3(3, width)
        self.body = nn.Sequential(*(_ResidualBlock(width) for _ in range(blocks)))
        self.tail = _conv3x3(width, 3)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def receptive_radius(self) -> int:
        """How far (pixels) an output pixel sees: one per 3x3 convolution."""
        return 2 + 2 * self.blocks

    def describe(self) -> dict:
        return {
            "generator": "KimGenerator: 3x3 conv head, residual blocks (conv-ReLU-conv + identity), long skip, "
            f"zero-initialised 3x3 conv tail; output = clamp(input + {self.RESIDUAL_SCALE:g} * residual, 0, 255); replicate padding",
            "generator_width": self.width,
            "generator_blocks": self.blocks,
            "generator_parameters": sum(parameter.numel() for parameter in self.parameters()),
            "receptive_radius": self.receptive_radius,
        }

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.head(image / 255.0))
        features = features + self.body(features)
        return torch.clamp(image + self.RESIDUAL_SCALE * self.tail(features), 0.0, 255.0)


def median3x3(image: torch.Tensor) -> torch.Tensor:
    """Per-channel 3x3 median with edge replication (the median3 manipulation's border), differentiable."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    batch, channels, height, width = image.shape
    windows = F.unfold(padded, 3).view(batch, channels, 9, height, width)
    return windows.median(dim=2).values


class _Discriminator(nn.Module):
    """``forward`` -> one logit per image (pristine = 1); ``features`` -> the activations the perceptual term matches."""

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        activations, value = [], self.prepare(image)
        for layer in self.stages:
            value = F.leaky_relu(layer(value), 0.2)
            activations.append(value)
        return activations

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(image)[-1])

    def classify(self, last: torch.Tensor) -> torch.Tensor:
        return self.head(last.mean(dim=(2, 3))).squeeze(1)


class KimDiscriminator(_Discriminator):
    """Forensic discriminator: fixed median-filter residual, 5x5 conv, three stride-2 3x3 convs, pooling, logit."""

    RESIDUAL_SCALE = 16.0  # gray levels -> units of order 1 (residuals of natural images are a few levels)

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        self.stages = nn.ModuleList(
            [
                nn.Conv2d(3, width, 5, padding=2),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
                nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            ]
        )
        self.head = nn.Linear(4 * width, 1)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        return (image - median3x3(image)) / self.RESIDUAL_SCALE

    def describe(self) -> dict:
        return {
            "discriminator": "kim: fixed 3x3 median-filter residual (image - median3(image), / 16), conv 5x5, "
            "3 stride-2 conv 3x3, LeakyReLU 0.2, global average pooling, linear logit",
            "discriminator_widths": [self.width, 2 * self.width, 2 * self.width, 4 * self.width],
        }


class VGGDiscriminator(_Discriminator):
    """VGG-style discriminator from scratch: 4 stages of two 3x3 convs (the second stride 2), pooling, 2 linear."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, previous = [], 3
        for stage_width in widths:
            layers += [
                nn.Conv2d(previous, stage_width, 3, padding=1),
                nn.Conv2d(stage_width, stage_width, 3, stride=2, padding=1),
            ]
            previous = stage_width
        self.stages = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.Linear(widths[-1], widths[-1]), nn.LeakyReLU(0.2), nn.Linear(widths[-1], 1))

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        return image / 127.5 - 1.0

    def describe(self) -> dict:
        return {
            "discriminator": "vgg: 4 stages of (conv 3x3, conv 3x3 stride 2), LeakyReLU 0.2, global average pooling, "
            "linear + LeakyReLU + linear logit; from scratch",
            "discriminator_widths": [self.width, 2 * self.width, 4 * self.width, 8 * self.width],
        }


def new_discriminator(kind: str, width: int = 32) -> _Discriminator:
    if kind == "kim":
        return KimDiscriminator(width)
    if kind == "vgg":
        return VGGDiscriminator(width)
    raise CfzooError(f"unknown discriminator {kind!r}; choose one of: {', '.join(DISCRIMINATORS)}")


# --- data -------------------------------------------------------------------------------------


class PairCrops:
    """Seeded batches of aligned (filtered, pristine) crops from a patch set's pairs."""

    def __init__(
        self, patch_set: PatchSet, pristine_rows: np.ndarray, manipulated_rows: np.ndarray, crop: int, seed: int
    ):
        size = patch_set.patches.shape[1]
        if not 8 <= crop <= size:
            raise CfzooError(f"crop must be from 8 to {size} pixels, got {crop}")
        self.patches, self.pristine, self.manipulated, self.crop = (
            patch_set.patches,
            pristine_rows,
            manipulated_rows,
            crop,
        )
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.order, self.cursor = self.rng.permutation(len(manipulated_rows)), 0

    def next_batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(filtered, pristine) uint8 [B, crop, crop, 3]: pairs in a reshuffled order every epoch, same window in both."""
        chosen = []
        while len(chosen) < batch_size:
            if self.cursor == len(self.order):
                self.order, self.cursor = self.rng.permutation(len(self.manipulated)), 0
            take = self.order[self.cursor : self.cursor + batch_size - len(chosen)]
            self.cursor += len(take)
            chosen.extend(take)
        corners = self.rng.integers(0, self.size - self.crop + 1, size=(batch_size, 2))
        filtered = np.empty((batch_size, self.crop, self.crop, 3), dtype=np.uint8)
        pristine = np.empty_like(filtered)
        for index, (pair, (row, col)) in enumerate(zip(chosen, corners)):
            window = np.s_[row : row + self.crop, col : col + self.crop]
            filtered[index] = self.patches[self.manipulated[pair]][window]
            pristine[index] = self.patches[self.pristine[pair]][window]
        return filtered, pristine


# --- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator's loss terms (see the module's notes for what each term is)."""

    pixel: float = 1.0
    perceptual: float = 0.1
    adversarial: float = 0.01
    ramp_fraction: float = 0.25  # adversarial and perceptual weights grow linearly over this share of the steps


@dataclass(frozen=True)
class RestorerPlan:
    """Everything that decides a trained restorer besides the photos."""

    task: str
    discriminator: str
    steps: int = 6000  # about an hour on the shared 2-core CPU (30-34 crops per second)
    batch_size: int = 16
    crop: int = 48
    learning_rate: float = 2e-4
    warmup_steps: int = 100  # learning rates grow linearly to their value over these first steps
    seed: int = 0
    generator_width: int = 48
    generator_blocks: int = 4
    discriminator_width: int = 32
    weights: LossWeights = field(default_factory=LossWeights)
    patches_per_image: int = PATCHES_PER_IMAGE
    max_images_per_device: int | None = None
    test_devices: tuple[str, ...] | None = None
    evaluation_pairs: int = 256  # test pairs the record's PSNR/SSIM are measured on (0: none)

    @property
    def model_id(self) -> str:
        return restorer_id(self.task, self.discriminator)


def generator_loss_terms(generator, discriminator, filtered, pristine):
    """(restored, {"pixel", "perceptual", "adversarial"}) for float batches [N,3,H,W] 0..255."""
    restored = generator(filtered)
    baseline = torch.mean((filtered - pristine) ** 2).detach().clamp_min(1e-6)
    pixel = torch.mean((restored - pristine) ** 2) / baseline
    seen = straight_through_round(restored)
    fake_features = discriminator.features(seen)
    with torch.no_grad():
        real_features = discriminator.features(pristine)
    perceptual = sum(
        torch.mean((fake - real) ** 2) / torch.mean(real**2).clamp_min(1e-6)
        for fake, real in zip(fake_features, real_features)
    ) / len(real_features)
    adversarial = F.binary_cross_entropy_with_logits(
        discriminator.classify(fake_features[-1]), torch.ones(len(filtered), device=filtered.device)
    )
    return restored, {"pixel": pixel, "perceptual": perceptual, "adversarial": adversarial}


def straight_through_round(image: torch.Tensor) -> torch.Tensor:
    """Rounded values forward (what a uint8 file holds), the identity's gradient backward."""
    return image + (torch.round(image) - image).detach()


def discriminator_loss(discriminator, restored, pristine):
    real = discriminator(pristine)
    fake = discriminator(straight_through_round(restored.detach()))
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def train_networks(plan: RestorerPlan, crops: PairCrops, on_step: Callable[[int, int], None] | None = None):
    """Train a generator and its discriminator for ``plan.steps`` steps; returns (generator, discriminator, losses)."""
    torch.manual_seed(plan.seed)
    device = training_device()
    generator = KimGenerator(plan.generator_width, plan.generator_blocks).to(device)
    discriminator = new_discriminator(plan.discriminator, plan.discriminator_width).to(device)
    betas = (0.5, 0.999)
    generator_optimiser = torch.optim.Adam(generator.parameters(), lr=plan.learning_rate, betas=betas)
    discriminator_optimiser = torch.optim.Adam(discriminator.parameters(), lr=plan.learning_rate, betas=betas)
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / max(1, plan.warmup_steps)))
        for optimiser in (generator_optimiser, discriminator_optimiser)
    ]
    losses = {name: [] for name in ("generator", "pixel", "perceptual", "adversarial", "discriminator")}
    ramp_steps = max(1, int(plan.weights.ramp_fraction * plan.steps))
    generator.train()
    discriminator.train()
    for step in range(plan.steps):
        filtered, pristine = (to_tensor(batch, device) for batch in crops.next_batch(plan.batch_size))
        ramp = min(1.0, (step + 1) / ramp_steps)
        discriminator.requires_grad_(False)  # the generator's step differentiates through D, not into it
        restored, terms = generator_loss_terms(generator, discriminator, filtered, pristine)
        total = (
            plan.weights.pixel * terms["pixel"]
            + ramp * plan.weights.perceptual * terms["perceptual"]
            + ramp * plan.weights.adversarial * terms["adversarial"]
        )
        generator_optimiser.zero_grad(set_to_none=True)
        total.backward()
        generator_optimiser.step()
        discriminator.requires_grad_(True)
        discriminator_optimiser.zero_grad(set_to_none=True)
        critic = discriminator_loss(discriminator, restored, pristine)
        critic.backward()
        discriminator_optimiser.step()
        for schedule in schedules:
            schedule.step()
        losses["generator"].append(total.item())
        for name, value in terms.items():
            losses[name].append(value.item())
        losses["discriminator"].append(critic.item())
        if on_step is not None:
            on_step(step + 1, plan.steps)
    return generator.eval(), discriminator.eval(), losses


@torch.no_grad()
def restore_patches(generator: KimGenerator, patches: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """uint8 [N,H,W,3] -> the generator's output rounded to uint8 [N,H,W,3] (what the ONNX runtime path returns)."""
    generator.eval()
    device = next(generator.parameters()).device
    out = np.empty(np.shape(patches), dtype=np.uint8)
    for start in range(0, len(patches), batch_size):
        restored = generator(to_tensor(patches[start : start + batch_size], device))
        out[start : start + len(restored)] = torch.round(restored).permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()
    return out


def train_restorer(
    task: str,
    discriminator: str,
    data: CameraDataset,
    out_dir: str | os.PathLike[str],
    steps: int = RestorerPlan.steps,
    batch_size: int = RestorerPlan.batch_size,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    on_status: StatusCallback | None = None,
    **settings,
) -> dict:
    """Train the restorer of ``task`` with the ``discriminator`` kind on the train devices' aligned pairs,
    measure PSNR/SSIM on test pairs, and write ``restorer-<task>-<discriminator>.safetensors`` (generator
    weights) and ``.json`` (the record, returned) into ``out_dir``, atomically.

    ``settings`` are further :class:`RestorerPlan` fields (crop, learning_rate, generator_width, weights...).
    """
    plan = RestorerPlan(
        task=task, discriminator=discriminator, steps=steps, batch_size=batch_size, seed=seed, **settings
    )
    return train_plan(plan, data, out_dir, cache_dir, on_status)


def train_plan(
    plan: RestorerPlan,
    data: CameraDataset,
    out_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    on_status: StatusCallback | None = None,
) -> dict:
    """:func:`train_restorer` for a ready :class:`RestorerPlan`."""
    from safetensors.torch import save_file

    from cfzoo.data import aligned_pairs
    from cfzoo.metrics import pair_quality

    check_restorer(plan.task, plan.discriminator)
    if plan.steps < 1 or plan.batch_size < 1:
        raise CfzooError("steps and batch size must be at least 1")
    status = on_status or (lambda stage, done, total: None)
    split = split_devices(data.device_names, plan.seed, plan.test_devices)
    patch_sets = {
        name: build_patch_set(
            data,
            PatchSetSpec(
                plan.task,
                name,
                plan.seed,
                patches_per_image=plan.patches_per_image,
                max_images_per_device=plan.max_images_per_device,
            ),
            split,
            cache_dir,
            on_progress=lambda done, total, name=name: status(f"patches {name}", done, total),
        )
        for name in (("train", "test") if plan.evaluation_pairs else ("train",))
    }
    train_set = patch_sets["train"]
    pristine_rows, manipulated_rows = aligned_pairs(train_set)
    crops = PairCrops(train_set, pristine_rows, manipulated_rows, plan.crop, plan.seed)
    started = time.perf_counter()
    generator, discriminator, losses = train_networks(plan, crops, lambda done, total: status("train", done, total))
    seconds = time.perf_counter() - started

    metrics = {}
    if plan.evaluation_pairs:
        test_set = patch_sets["test"]
        partners, manipulated = aligned_pairs(test_set)
        count = min(plan.evaluation_pairs, len(manipulated))
        chosen = np.sort(np.random.default_rng([plan.seed, 1]).choice(len(manipulated), size=count, replace=False))
        filtered, pristine = (
            np.asarray(test_set.patches[manipulated[chosen]]),
            np.asarray(test_set.patches[partners[chosen]]),
        )
        status("evaluate", 0, 1)
        restored = restore_patches(generator, filtered)
        status("evaluate", 1, 1)
        metrics = {
            "test": {
                "pairs": len(chosen),
                "input": pair_quality(pristine, filtered),
                "restored": pair_quality(pristine, restored),
            }
        }

    hyper = {
        **{
            key: value
            for key, value in asdict(plan).items()
            if key not in ("task", "discriminator", "seed", "test_devices", "weights")
        },
        "loss_weights": asdict(plan.weights),
        "optimiser": "Adam (beta1 0.5, beta2 0.999), linear warm-up over warmup_steps, then constant; generator and discriminator alike",
        **generator.describe(),
        **discriminator.describe(),
        "perceptual_features": "the discriminator's activations after every convolution (feature matching)",
    }
    record = {
        "id": plan.model_id,
        "kind": "restorer",
        "task": plan.task,
        "discriminator": plan.discriminator,
        "cfzoo_version": __version__,
        "seed": plan.seed,
        "split": {"train": list(split.train), "test": list(split.test), "seed": split.seed},
        "patch_sets": {name: patch_set.meta["key"] for name, patch_set in patch_sets.items()},
        "training_data_sha256": training_data_digest(train_set),
        "train_pairs": len(manipulated_rows),
        "hyperparameters": hyper,
        "loss": {name: loss_summary(values) for name, values in losses.items()},
        "metrics": metrics,
        "training_seconds": round(seconds, 1),
        "crops_per_second": round(plan.steps * plan.batch_size / seconds, 2),
        "machine": {**training_machine(), "torch_threads": torch.get_num_threads()},
    }
    out_dir = Path(out_dir)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in generator.state_dict().items()}
    write_atomically(out_dir / f"{plan.model_id}.safetensors", lambda path: save_file(state, str(path)))
    write_atomically(out_dir / f"{plan.model_id}.json", lambda path: path.write_text(json.dumps(record, indent=2)))
    return record


def load_generator(checkpoint_dir: str | os.PathLike[str], model_id: str) -> tuple[dict, KimGenerator]:
    """(training record, generator in eval mode) of a checkpoint written by :func:`train_restorer`."""
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    record_path, weights_path = checkpoint_dir / f"{model_id}.json", checkpoint_dir / f"{model_id}.safetensors"
    if not record_path.exists() or not weights_path.exists():
        raise CfzooError(
            f"no restorer checkpoint {model_id} in {checkpoint_dir}; train it with: cfzoo train-restorer DATA "
            f"--task TASK --discriminator KIND --out {checkpoint_dir}"
        )
    record = json.loads(record_path.read_text())
    hyper = record["hyperparameters"]
    generator = KimGenerator(hyper["generator_width"], hyper["generator_blocks"])
    generator.load_state_dict(load_file(str(weights_path)))
    return record, generator.eval()
