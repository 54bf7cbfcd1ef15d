"""The one exception family cfzoo raises for problems a user can fix."""


class CfzooError(Exception):
    """A problem with the user's input or environment; its message is one line that says what to do."""


class ImageReadError(CfzooError):
    """An image file could not be read: missing, empty, truncated, corrupt, too large or not an image."""


class DataError(CfzooError):
    """A data directory, split or patch set is unusable."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
