"""Where cfzoo keeps things on disk; each location can be moved with an environment variable."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Rebuildable data (patch sets, features): ``$CFZOO_CACHE``, else ``$XDG_CACHE_HOME/cfzoo``, else ``~/.cache/cfzoo``."""
    if os.environ.get("CFZOO_CACHE"):
        return Path(os.environ["CFZOO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cfzoo"


def cfzoo_home() -> Path:
    """The user's own models and checkpoints: ``$CFZOO_HOME``, else ``~/.cfzoo``."""
    return Path(os.environ.get("CFZOO_HOME") or Path.home() / ".cfzoo")


def default_checkpoint_dir() -> Path:
    return cfzoo_home() / "checkpoints"
