"""cfzoo: a counter-forensics model zoo.

The Python API (docs/api.md) is here at the top level: ``cfzoo.load_detector``, ``cfzoo.register``,
``cfzoo.detect``, ``cfzoo.conclude``, ``cfzoo.attack``, ``cfzoo.restore``. It is imported on first use, so that ``import cfzoo``
and the core modules (images, manipulations, patches, data, metrics: numpy and Pillow only) stay light.
"""

from cfzoo._version import __version__ as __version__  # re-exported

_API = ("Model", "load_detector", "register", "detect", "conclude", "attack", "restore")


def __getattr__(name: str):
    if name in _API:
        from cfzoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'cfzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
