"""What is computed on pixels with the zoo's models: scoring, detection and heatmaps, attacks, restoration.

Layer: depends on the core modules and :mod:`cfzoo.zoo` only (``pyproject.toml``, ``[tool.importlinter]``).

- :mod:`cfzoo.ops.scoring`: the one batched scorer every operation uses;
- :mod:`cfzoo.ops.targets`: what an attack aims at (one target or an ensemble, with companions), per task;
- :mod:`cfzoo.ops.detect`: forensic triage of whole images, verdicts and heatmaps;
- :mod:`cfzoo.ops.attacks`: the attack battery (each attack a module that registers itself), on patches and on whole images;
- :mod:`cfzoo.ops.restore`: GAN restoration of median-filtered images.
"""
