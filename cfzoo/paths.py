"""Where cfzoo keeps things on disk (each location can be moved with an environment variable), and how a path,
which is data, is shown to people."""

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


_CONTROL_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` as one line that shows what it holds and cannot act on a terminal: the bytes of a file name that are
    not UTF-8 (Python's surrogate escapes) as ``\\xNN``, control characters (ANSI escapes, carriage returns, new
    lines) as ``\\x1b``, ``\\r``, ``\\n``; everything else as it is. Markup is not a concern here: cfzoo's
    consoles print text as text."""
    shown = []
    for character in text:
        code = ord(character)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape of an undecodable byte
            shown.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            shown.append(_CONTROL_NAMES.get(character, f"\\x{code:02x}"))
        else:
            shown.append(character)
    return "".join(shown)
