"""Adversarial attacks on detectors through their ONNX gradient companions (no torch), one module per attack.

- :mod:`cfzoo.ops.attacks.registry`: the registered attacks; every other module that implements one (``fgsm``,
  ``pgd``, ``square``, ...) registers its methods there with what they need and take;
- :mod:`cfzoo.ops.attacks.battery`: any registered attack behind one call, checked against its target;
- :mod:`cfzoo.ops.attacks.common`: settings (validated when built), targets, results, the integer ball;
- :mod:`cfzoo.ops.attacks.image`: one whole image, tile by tile, written as a lossless PNG.

The paper's Tables II-IV (every detector's TPR on attacked test patches) are :mod:`cfzoo.experiments.transfer`.
Nothing is re-exported here, so ``cfzoo.ops.attacks.fgsm`` is always the module, never the function.
"""
