"""One way into Ray for every engine: import it (the ``scale`` extra), join the cluster at ``address`` or start
one here, keep Ray's own output off stdout, and shut down what was started here."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from cfzoo.errors import CfzooError, option


#: Where work runs: in this process, or on Ray.
ENGINES = ("local", "ray")


def check_engine(engine: str, address: str | None) -> None:
    """A one-line CfzooError for an unknown engine, or an address without the Ray engine."""
    if engine not in ENGINES:
        raise CfzooError(f"unknown {option('engine')} {engine!r}; choose one of: {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise CfzooError(f"{option('address')} joins a Ray cluster; add {option('engine')} ray")


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator:
    """The ``ray`` module, connected: to ``address``, or to a Ray started on this machine when it is None."""
    try:
        import ray
    except ImportError:
        raise CfzooError('--engine ray needs Ray: pip install "cfzoo[scale]"') from None
    # Ray prints what its nodes report (a worker that died and was replaced) to stdout: keep stdout for results
    with contextlib.redirect_stdout(sys.stderr):
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise CfzooError(f"cannot reach a Ray cluster at {address}: {str(error).splitlines()[0]}; check {option('address')} (ray status shows it)") from None
        try:
            for name in ("ray", "ray.data"):  # Ray's info lines: cfzoo reports progress itself
                logging.getLogger(name).setLevel(logging.ERROR)
            yield ray
        finally:
            if started_here:
                ray.shutdown()
