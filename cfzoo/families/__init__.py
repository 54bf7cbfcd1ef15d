"""The detector families, one object each (:class:`~cfzoo.families.base.Family`), and what works for any of them:
training, checkpoints, evaluation and export (needs the ``train`` extra; importing this package imports no torch).

- :data:`FAMILIES`: name -> family, in the order tables list them; :func:`get_family` with a one-line error
- :func:`train_detector`, :func:`load_checkpoint`, :func:`evaluate_checkpoints`: checkpoints (:mod:`.checkpoints`)
- :func:`export_detector`, :func:`export_checkpoint`, :func:`export_to_zoo`: ONNX files and zoos (:mod:`.export`)

A new family is one module here with one :class:`~cfzoo.families.base.Family` object, added to :data:`~cfzoo.families.registry.FAMILIES`
(and, for the runtime's tables, its title to :data:`cfzoo.paper.FAMILY_TITLES`).
"""

from __future__ import annotations

from cfzoo.families.base import CardText, Family, NetworkFamily
from cfzoo.families.checkpoints import evaluate_checkpoints, load_checkpoint, train_detector
from cfzoo.families.export import export_checkpoint, export_detector, export_to_zoo, model_metadata
from cfzoo.families.registry import FAMILIES, get_family

__all__ = [
    "FAMILIES",
    "CardText",
    "Family",
    "NetworkFamily",
    "evaluate_checkpoints",
    "export_checkpoint",
    "export_detector",
    "export_to_zoo",
    "get_family",
    "load_checkpoint",
    "model_metadata",
    "train_detector",
]
