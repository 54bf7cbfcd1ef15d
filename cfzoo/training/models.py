"""The CNN detectors as torch modules, all with the model contract's input: RGB float32 0..255, [N,3,128,128].

Each module does its own preprocessing (gray conversion, scaling), so the exported ONNX graphs do too.
Cozzolino2017 lives in :mod:`cfzoo.training.cozzolino` because it is built from the SPAM definition.
"""

from __future__ import annotations

import torch
from torch import nn

from cfzoo.images import LUMA_WEIGHTS


class RGBToGray(nn.Module):
    """BT.601 luma, not rounded: [N,3,H,W] -> [N,1,H,W]."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(LUMA_WEIGHTS, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image * self.weights).sum(dim=1, keepdim=True)


class ConstrainedConv2d(nn.Conv2d):
    """Bayar and Stamm's constrained convolution, eq. (1) of the paper: for every filter the centre weight
    is -1 and the other weights sum to 1, so each filter outputs a prediction error.

    Call :meth:`project` after every optimiser step (and once at construction) to restore the constraint.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        if kernel_size % 2 == 0:
            raise ValueError("the constrained filter needs an odd size to have a centre")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        # Positive off-centre weights start each filter as a (random) weighted mean of the neighbours. The
        # default signed initialisation makes the off-centre sum, which projection divides by, close to 0
        # for some filters: weights of several units that flip sign under training (measured: training
        # stalled at chance on blur0.5 and jpeg70).
        with torch.no_grad():
            self.weight.uniform_(0.0, 1.0)
        self.project()

    @torch.no_grad()
    def project(self) -> None:
        centre = self.kernel_size[0] // 2
        weight = self.weight
        weight[:, :, centre, centre] = 0.0
        off_centre_sum = weight.sum(dim=(2, 3), keepdim=True)
        # a filter whose off-centre weights sum to ~0 cannot be rescaled; restart it as a mean predictor
        degenerate = off_centre_sum.abs() < 1e-8
        weight.copy_(torch.where(degenerate, torch.ones_like(weight), weight))
        weight[:, :, centre, centre] = 0.0
        weight /= weight.sum(dim=(2, 3), keepdim=True)
        weight[:, :, centre, centre] = -1.0

    def constraint_error(self) -> float:
        """Largest deviation from eq. (1) over all filters (0 when the constraint holds)."""
        centre = self.kernel_size[0] // 2
        weight = self.weight.detach()
        centre_error = (weight[:, :, centre, centre] + 1).abs().max()
        off_centre_sum = weight.sum(dim=(2, 3)) - weight[:, :, centre, centre]
        return float(torch.maximum(centre_error, (off_centre_sum - 1).abs().max()))


class Bayar2016(nn.Module):
    """Bayar and Stamm (2016): a constrained first layer, three convolutional layers in all, two max-pooling
    layers and three fully connected layers, on the gray image (sizes in :meth:`describe`).

    The original's 227-pixel input and 4096-wide layers fit neither a 128-pixel patch, the CPU training
    budget nor the embedded zoo, hence the stride-2 third convolution and the 64-wide layers. No dropout:
    with 64-wide layers, dropout 0.5 kept the loss at chance for 1200 steps on jpeg70 and blur0.5, while
    without it jpeg70's loss fell from 0.70 to 0.27 in 200 steps (measured on ../shared/data/cameras).

    The first FC layer reads the global average of the last feature maps, not their flattened 7x7 grid.
    With the flattened grid, 18% of jpeg70 test patches (mostly textured ones) drove every unit to zero,
    so the network gave them one constant output, called both their pristine and manipulated versions
    manipulated (FPR 26.9%) and had a zero gradient there. Averaging makes the decision a statistic of the
    whole patch, as the manipulation traces are: jpeg70 test ACC rose from 85.07% to 97.92% with the same
    schedule, and the network shrank from 0.37 M to 0.18 M parameters.

    The prediction errors are clipped to +-``residual_clip`` gray levels before the next layer, as SPAM
    truncates its residuals: otherwise edges, whose errors are tens of levels, dominate the pooled features
    and the traces in the noise get lost. On resize1.5 the unclipped network called 66% of the pristine
    Google_Pixel5 patches resized (test ACC 87.03%); clipped at 8, with the same schedule, ACC rose to 97.83%
    (a 3000-patch test subset). ``residual_clip=None`` is the unclipped network of older checkpoints.

    ``width`` multiplies the widths of the free convolutions and the FC layers (``width=2``: 192, 128 and 128), for
    measuring what capacity buys adversarial training; the shipped models have width 1.
    """

    RESIDUAL_CLIP = 8.0

    def __init__(self, residual_clip: float | None = RESIDUAL_CLIP, width: int = 1) -> None:
        super().__init__()
        self.residual_clip, self.width = residual_clip, width
        first, second = 96 * width, 64 * width
        self.gray = RGBToGray()
        self.constrained = ConstrainedConv2d(1, 3, 5)
        self.features = nn.Sequential(
            nn.Conv2d(3, first, 7, stride=2, padding=3),
            nn.BatchNorm2d(first),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(first, second, 5, stride=2, padding=2),
            nn.BatchNorm2d(second),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(second, second),
            nn.ReLU(inplace=True),
            nn.Linear(second, second),
            nn.ReLU(inplace=True),
            nn.Linear(second, 2),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        residual = self.constrained(self.gray(image))
        if self.residual_clip is not None:
            residual = residual.clamp(-self.residual_clip, self.residual_clip)
        return self.classifier(self.features(residual))

    def after_step(self) -> None:
        self.constrained.project()

    def describe(self) -> dict:
        """The architecture in words and the hyper-parameters a checkpoint needs to rebuild this network."""
        clip = "" if self.residual_clip is None else f"clip to +-{self.residual_clip:g} -> "
        first, second = 96 * self.width, 64 * self.width
        parameters = sum(parameter.numel() for parameter in self.parameters()) / 1e6
        architecture = (
            f"gray -> constrained 3@5x5 -> {clip}{first}@7x7 stride 2 -> max-pool 3/2 -> {second}@5x5 stride 2 -> "
            f"max-pool 3/2 -> global average -> FC {second} -> FC {second} -> FC 2; batch norm and ReLU after the free "
            f"convolutions, ReLU between the FC layers, no dropout; {parameters:.2f} M parameters"
        )
        described = {"architecture": architecture, "residual_clip": self.residual_clip}
        if self.width != 1:  # records of width-1 networks stay as they were
            described["width"] = self.width
        return described


#: The "KV" 5x5 high-pass kernel of the spatial rich model (Fridrich and Kodovsky, 2012), a prediction error.
KV_KERNEL = (
    torch.tensor([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]])
    / 12.0
)


class Xception(nn.Module):
    """timm's ``legacy_xception`` (Chollet's original Xception), trained from scratch.

    ``input_filter="kv"`` (the default) feeds it the KV high-pass residual of each colour channel, clipped to
    +-8 gray levels and scaled to -1..1, instead of the scaled image: still 3 channels of 128x128. The CPU
    budget (600 steps of 16 patches) is far from the paper's GPU training, and on the plain image Xception
    learned the photos' content and cameras rather than the traces: jpeg70 test ACC 52.3% (74% on its train
    patches), against 96.85% with the residual and the same schedule (../shared/data/cameras; median7 99.15%).
    A +-1 noise pattern is a full-scale residual after this filter (its absolute weights sum to 8), and a
    network that never saw noise on a pristine photo called 78% of noisy pristine median7 patches filtered,
    and FGSM's eps = 1 step too; hence the ``pristine_noise`` training default (docs/tables2-4.md).
    ``input_filter=None`` is the plain network of older checkpoints.
    """

    RESIDUAL_CLIP = 8.0

    def __init__(self, input_filter: str | None = "kv", residual_clip: float = RESIDUAL_CLIP) -> None:
        super().__init__()
        import timm

        if input_filter not in (None, "kv"):
            raise ValueError(f"unknown input filter {input_filter!r}; choose 'kv' or None")
        self.input_filter = input_filter
        self.residual_clip = residual_clip
        self.net = timm.create_model("legacy_xception", pretrained=False, num_classes=2, in_chans=3)
        # a constant, not a weight: not in the state dict, so checkpoints of either design load alike
        self.register_buffer("kv_kernel", KV_KERNEL.expand(3, 1, 5, 5).clone(), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.input_filter is None:
            return self.net(image / 127.5 - 1.0)
        residual = nn.functional.conv2d(image, self.kv_kernel, padding=2, groups=3)
        return self.net(residual.clamp(-self.residual_clip, self.residual_clip) / self.residual_clip)

    def describe(self) -> dict:
        """The architecture in words and the hyper-parameters a checkpoint needs to rebuild this network."""
        if self.input_filter is None:
            front = "RGB input scaled to -1..1 inside the model"
        else:
            front = f"input: KV 5x5 high-pass residual per colour channel, clipped to +-{self.residual_clip:g} and scaled to -1..1"
        architecture = (
            f"timm legacy_xception (36 convolutions, depthwise-separable from the second block on), {front}, "
            "2 classes, no pretrained weights"
        )
        hyperparameters = {"architecture": architecture, "input_filter": self.input_filter}
        if self.input_filter is not None:
            hyperparameters["residual_clip"] = self.residual_clip
        return hyperparameters
