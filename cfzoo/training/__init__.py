"""Training the detectors (torch, scikit-learn): needs the ``train`` extra.

Importing this package does not import torch; the modules that need it do, and
:func:`require_training_extra` turns a missing install into a one-line error.
"""

from __future__ import annotations

import importlib.util

from cfzoo.errors import CfzooError


def require_training_extra(
    purpose: str = "training", modules: tuple[str, ...] = ("torch", "sklearn", "safetensors")
) -> None:
    """A one-line error naming the ``train``-extra modules that ``purpose`` needs and that are missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise CfzooError(
            f"{purpose} needs {', '.join(missing)}, which are not installed; pip install 'cfzoo[train]' (see DEVELOPERS.md)"
        )
