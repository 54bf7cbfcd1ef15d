"""The paper's experiments on a camera dataset: Tables II-IV (:mod:`cfzoo.experiments.transfer`), Table V
(:mod:`cfzoo.experiments.restoration`) and all tables in one run (:mod:`cfzoo.experiments.reproduce`).

Layer: depends on the core modules, :mod:`cfzoo.zoo` and :mod:`cfzoo.ops` only.
"""
