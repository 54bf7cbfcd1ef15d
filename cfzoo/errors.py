"""The one exception family cfzoo raises for problems a user can fix."""


class CfzooError(Exception):
    """A problem with the user's input or environment; its message is one line that says what to do."""


class ImageReadError(CfzooError):
    """An image file could not be read: missing, empty, truncated, corrupt, too large or not an image."""


class DataError(CfzooError):
    """A data directory, split or patch set is unusable."""
