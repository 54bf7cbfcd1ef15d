"""Training the detectors (torch, scikit-learn): needs the ``train`` extra.

Importing this package does not import torch; the modules that need it do, and
:func:`require_training_extra` turns a missing install into a one-line error.
"""

from __future__ import annotations

import importlib.util

from cfzoo.errors import CfzooError

FAMILIES = ("spam", "bayar2016", "cozzolino2017", "xception")


def require_training_extra() -> None:
    missing = [name for name in ("torch", "sklearn", "safetensors") if importlib.util.find_spec(name) is None]
    if missing:
        raise CfzooError(
            f"training needs {', '.join(missing)}, which are not installed; pip install 'cfzoo[train]' (see DEVELOPERS.md)"
        )
