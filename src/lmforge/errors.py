"""Errors that reach the user as one line (the CLI prints them and exits with status 2)."""


class LmforgeError(Exception):
    """Base class: a problem with the user's input, not a bug in lmforge."""


class ConfigError(LmforgeError):
    """A recipe or override names an unknown field or gives a bad value."""


class DataError(LmforgeError):
    """A corpus or prepared data set is missing, empty or unreadable."""


class CheckpointError(LmforgeError):
    """A run directory or checkpoint is missing, truncated or foreign."""


class WriteError(LmforgeError):
    """An output could not be written: the disk is full or read-only, or the folder is not writable."""
