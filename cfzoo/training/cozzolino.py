"""Cozzolino, Poggi and Verdoliva (2017): the SPAM feature recast as a CNN, then fine-tuned.

The network follows :mod:`cfzoo.training.spam` step by step, in operators that export to ONNX:

1. gray in thousandths (a fixed 1x1 convolution, 299 R + 587 G + 114 B: exact for integer RGB);
2. the two third-order residuals (fixed 1x4 and 4x1 convolutions, SRM's offsets and interior crop);
3. quantisation into 5 bins as a one-hot map [N,5,h,w]: hard (nearest bin, halves away from zero,
   truncated at +-T), or soft, ``softmax(-sharpness * (r/q - b)^2)`` over the bins b = -2..2;
4. fourth-order co-occurrences: the outer product of the maps at 4 consecutive positions, averaged
   over positions (as two batched matrix products of 25-channel pair maps), i.e. average pooling;
5. symmetrisation (the 625 codes summed into their 169 classes by index) and the two parts (spam14h, spam14v);
6. one fully connected layer 338 -> 2, initialised from the linear SVM on hard SPAM.

The hard network reproduces :func:`cfzoo.training.spam.spam_features` (a test checks it); the detector is
the soft network, fine-tuned by backpropagation, as in the paper.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cfzoo.images import LUMA_WEIGHTS
from cfzoo.training.spam import (
    CLASS_COUNT,
    CODE_COUNT,
    RESIDUAL_OFFSETS,
    RESIDUAL_TAPS,
    SPAM_BINS,
    SPAM_DIMENSION,
    SPAM_Q,
    SPAM_T,
    VERTICAL_RESIDUAL_OFFSETS,
    symmetry_classes,
)
from cfzoo.training.svm import LinearSVM

LUMA_SCALE = 1000.0
SOFT_SHARPNESS = 10.0


def _residual_kernel(offsets: np.ndarray) -> np.ndarray:
    """1-D correlation kernel whose output at index 0 of the window sits at offset min(offsets)."""
    kernel = np.zeros(offsets.max() - offsets.min() + 1, dtype=np.float32)
    kernel[offsets - offsets.min()] = RESIDUAL_TAPS
    return kernel


#: Constants that checkpoints written while they were persistent buffers hold (``membership``: the former
#: dense 625x169 symmetrisation matrix). Loading drops them; any other mismatch still fails.
_STORED_CONSTANTS = ("luma", "horizontal_kernel", "vertical_kernel", "bin_centres", "membership")


def _drop_stored_constants(module, state_dict, prefix, *args) -> None:
    for name in _STORED_CONSTANTS:
        state_dict.pop(prefix + name, None)


class Cozzolino2017(nn.Module):
    ARCHITECTURE = (
        "gray (thousandths) -> fixed third-order residuals (1x4, 4x1) -> soft 5-bin quantisation "
        f"(q={SPAM_Q:g}, T={SPAM_T}, sharpness {SOFT_SHARPNESS:g}) -> 4th-order co-occurrences averaged over the "
        "patch -> SRM symmetrisation (338) -> FC 2"
    )

    def __init__(self, hard: bool = False, sharpness: float = SOFT_SHARPNESS) -> None:
        super().__init__()
        self.hard = hard
        self.sharpness = sharpness
        # fixed by the SPAM definition: buffers (they follow .to(device)) but not part of checkpoints
        constants = {
            "luma": torch.tensor([w * LUMA_SCALE for w in LUMA_WEIGHTS]).view(1, 3, 1, 1),
            "horizontal_kernel": torch.from_numpy(_residual_kernel(RESIDUAL_OFFSETS)).view(1, 1, 1, -1),
            "vertical_kernel": torch.from_numpy(_residual_kernel(VERTICAL_RESIDUAL_OFFSETS)).view(1, 1, -1, 1),
            "bin_centres": torch.arange(-SPAM_T, SPAM_T + 1, dtype=torch.float32).view(1, -1, 1, 1),
            "symmetry_class": torch.from_numpy(symmetry_classes().copy()),
        }
        for name, value in constants.items():
            self.register_buffer(name, value, persistent=False)
        self.register_load_state_dict_pre_hook(_drop_stored_constants)
        self.classifier = nn.Linear(SPAM_DIMENSION, 2)
        # where each residual's interior crop (SRM's, 2 pixels on every side) starts inside its conv output
        self._horizontal_start = 2 + int(RESIDUAL_OFFSETS.min())
        self._vertical_start = 2 + int(VERTICAL_RESIDUAL_OFFSETS.min())

    @classmethod
    def from_linear_svm(cls, svm: LinearSVM, **kwargs) -> Cozzolino2017:
        """Logits (0, decision): the softmax's class-1 probability is sigmoid of the SVM's decision."""
        model = cls(**kwargs)
        weights, bias = svm.folded()
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.zero_()
            model.classifier.weight[1] = torch.from_numpy(weights.astype(np.float32))
            model.classifier.bias[1] = bias
        return model

    def describe(self) -> dict:
        return {"architecture": self.ARCHITECTURE, "q": SPAM_Q, "T": SPAM_T, "sharpness": self.sharpness}

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """SPAM features [N, 338] of RGB [N,3,H,W] (0..255): exact when hard, relaxed when soft."""
        gray = (image * self.luma).sum(dim=1, keepdim=True)
        height, width = gray.shape[2:]
        inner_h, inner_w = height - 4, width - 4
        horizontal = nn.functional.conv2d(gray[:, :, 2 : height - 2, :], self.horizontal_kernel)
        horizontal = horizontal[:, :, :, self._horizontal_start : self._horizontal_start + inner_w]
        vertical = nn.functional.conv2d(gray[:, :, :, 2 : width - 2], self.vertical_kernel)
        vertical = vertical[:, :, self._vertical_start : self._vertical_start + inner_h, :]
        horizontal_bins = self._quantise(horizontal)
        vertical_bins = self._quantise(vertical)
        along_rows, along_columns = 3, 2
        spam14h = self._cooccurrence(horizontal_bins, along_rows) + self._cooccurrence(vertical_bins, along_columns)
        spam14v = self._cooccurrence(vertical_bins, along_rows) + self._cooccurrence(horizontal_bins, along_columns)
        return torch.cat([spam14h, spam14v], dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))

    def _quantise(self, residual: torch.Tensor) -> torch.Tensor:
        """Residual [N,1,h,w] in thousandths -> bin memberships [N,5,h,w]."""
        step = SPAM_Q * LUMA_SCALE
        if self.hard:
            magnitude = residual.abs()
            level = (magnitude >= 0.5 * step).float() + (magnitude >= 1.5 * step).float()
            bins = torch.sign(residual) * level
            return (bins == self.bin_centres).float()
        return torch.softmax(-self.sharpness * (residual / step - self.bin_centres) ** 2, dim=1)

    def _cooccurrence(self, bins: torch.Tensor, axis: int) -> torch.Tensor:
        """Mean over positions of the outer product of the memberships of 4 consecutive samples,
        symmetrised: [N,5,h,w] -> [N,169]."""
        length = bins.shape[axis] - 3
        first, second, third, fourth = (bins.narrow(axis, position, length) for position in range(4))
        count = bins.shape[0]
        # pairs (d0, d1) and (d2, d3) as 25-channel maps, then one batched product over positions
        leading = (first.unsqueeze(2) * second.unsqueeze(1)).reshape(count, SPAM_BINS**2, -1)
        trailing = (third.unsqueeze(2) * fourth.unsqueeze(1)).reshape(count, SPAM_BINS**2, -1)
        joint = torch.bmm(leading, trailing.transpose(1, 2)) / leading.shape[2]  # [N, (d0,d1), (d2,d3)]
        # code = d0 + 5 d1 + 25 d2 + 125 d3: put d3 first so that the flat index is the code
        codes = joint.reshape(count, SPAM_BINS, SPAM_BINS, SPAM_BINS, SPAM_BINS).permute(0, 4, 3, 2, 1)
        # a sum by index rather than a product with a 625x169 0/1 matrix: the exported graphs keep 625
        # indices instead of that 422 KB matrix
        return codes.new_zeros(count, CLASS_COUNT).index_add(1, self.symmetry_class, codes.reshape(count, CODE_COUNT))
