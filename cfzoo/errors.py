"""The one exception family cfzoo raises for problems a user can fix."""

import numbers
import re

_OPTION = re.compile(r"\{option:([a-z_]+)\|(--[a-z0-9-]+)\|([^{}|]+)\}")


def option(parameter: str, flag: str | None = None, python: str | None = None) -> str:
    """An argument named in an error message: the command line shows its flag (``--max-patches``, or ``flag`` where
    it is not the parameter with dashes), Python its parameter (``max_patches``, or ``python``: ``companion=False``)."""
    return (
        "{option:" + parameter + "|" + (flag or "--" + parameter.replace("_", "-")) + "|" + (python or parameter) + "}"
    )


class CfzooError(Exception):
    """A problem with the user's input or environment; its message is one line that says what to do.

    Arguments in the message are marked with :func:`option`: ``str(error)`` names them as Python parameters,
    :meth:`for_command_line` as the CLI's flags."""

    def __str__(self) -> str:
        return _OPTION.sub(lambda found: found.group(3), super().__str__())

    def for_command_line(self) -> str:
        return _OPTION.sub(lambda found: found.group(2), super().__str__())


class ImageReadError(CfzooError):
    """An image file could not be read: missing, empty, truncated, corrupt, too large or not an image."""


class DataError(CfzooError):
    """A data directory, split or patch set is unusable."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_count(value: int | None, what: str, hint: str) -> int | None:
    """``value`` if it is None or a positive integer (numpy's too), else a one-line CfzooError."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
        raise CfzooError(f"{what} must be an integer of at least 1, got {value!r}; {hint}")
    return value
