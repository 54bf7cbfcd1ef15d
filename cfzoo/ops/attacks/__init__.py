"""Adversarial attacks on detectors through their ONNX gradient companions (no torch), one module per attack.

- :mod:`cfzoo.ops.attacks.fgsm`: FGSM and iterative FGSM with integer epsilon on uint8 patches;
- :mod:`cfzoo.ops.attacks.image`: one whole image, tile by tile, written as a lossless PNG.

The paper's Tables II-IV (every detector's TPR on attacked test patches) are :mod:`cfzoo.experiments.transfer`.
Nothing is re-exported here, so ``cfzoo.ops.attacks.fgsm`` is always the module, never the function.
"""
