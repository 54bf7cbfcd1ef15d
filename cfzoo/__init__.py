"""cfzoo: a counter-forensics model zoo.

The Python API (docs/api.md) is here at the top level: ``cfzoo.load_detector``, ``cfzoo.register``,
``cfzoo.detect``, ``cfzoo.attack``, ``cfzoo.restore``. It is imported on first use, so that ``import cfzoo``
and the core modules (images, manipulations, patches, data, metrics: numpy and Pillow only) stay light.
"""

__version__ = "0.1.0"

_API = ("Model", "load_detector", "register", "detect", "attack", "restore")


def __getattr__(name: str):
    if name in _API:
        import importlib

        # imported by name, not by an import statement: every module imports this package for __version__, and
        # the layer contract (pyproject.toml) must not see them all depend on the API at the top
        return getattr(importlib.import_module("cfzoo.api"), name)
    raise AttributeError(f"module 'cfzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
