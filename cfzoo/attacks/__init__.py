"""Adversarial attacks on the zoo's detectors through their ONNX gradient companions (no torch).

- :mod:`cfzoo.attacks.fgsm`: FGSM and iterative FGSM with integer epsilon on uint8 patches;
- :mod:`cfzoo.attacks.transfer`: Tables II-IV, the TPR of every detector on attacked test patches;
- :mod:`cfzoo.attacks.image`: one whole image, tile by tile, written as a lossless PNG.
"""

from cfzoo.attacks.fgsm import METHODS, AttackResult, AttackSettings, attack_patches, check_eps, default_iterations, fgsm, iterative_fgsm
from cfzoo.attacks.image import attack_image, attack_image_file, attack_positions, paste_patches
from cfzoo.attacks.transfer import attack_dataset, attack_markdown, attack_patch_set, manipulated_rows

__all__ = [
    "METHODS",
    "AttackResult",
    "AttackSettings",
    "attack_dataset",
    "attack_image",
    "attack_image_file",
    "attack_markdown",
    "attack_patch_set",
    "attack_patches",
    "attack_positions",
    "check_eps",
    "default_iterations",
    "fgsm",
    "iterative_fgsm",
    "manipulated_rows",
    "paste_patches",
]
