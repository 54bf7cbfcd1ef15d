"""The progress callbacks long operations take, one definition each."""

from __future__ import annotations

from collections.abc import Callable

#: (done, total) of one stage.
ProgressCallback = Callable[[int, int], None]
#: (stage, done, total): operations with several stages (patch sets, training, scoring) name the stage.
StatusCallback = Callable[[str, int, int], None]
