"""Errors a user can fix: the message says what is wrong and what to do.

The CLI prints these as one line and exits non-zero; anything else that
escapes is a bug in seqmnist and keeps its traceback.
"""


class SeqmnistError(Exception):
    """Base class for problems with the user's input, files or environment."""


class ConfigError(SeqmnistError, ValueError):
    """An unknown option or an impossible value in a configuration."""


class DataError(SeqmnistError):
    """A data file is missing, corrupt, or does not match its checksum."""


class RunError(SeqmnistError):
    """A run directory or checkpoint is missing, corrupt, or inconsistent."""
