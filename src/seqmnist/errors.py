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


class NonFiniteOutputs(RunError):
    """A model gave NaN or infinite outputs: its weights are damaged or training diverged."""


class ImageError(SeqmnistError):
    """An image given for prediction cannot be read or cannot hold a digit."""


class UndecodableImage(ImageError):
    """The bytes given as an image are no image file Pillow can decode, or are damaged."""


class ExportError(SeqmnistError):
    """An exported model could not be written or does not match the original."""


class StorageError(SeqmnistError, OSError):
    """A file could not be written: the disk is full or the folder is not writable.

    Also an OSError, so code that already handles OSError keeps working.
    """


class TrainingDiverged(SeqmnistError):
    """The training loss became NaN or infinite; nothing after the last good step is kept."""


class TrainingInterrupted(SeqmnistError):
    """SIGINT or SIGTERM stopped training after a checkpoint was written."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        # The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM.
        self.exit_code = 128 + signal_number
