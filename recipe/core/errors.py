"""The recipe's error types. Entry points turn each into one line on stderr and exit code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration the user must fix; the message says which key or file."""


class DataError(ValueError):
    """An annotation or image problem the user must fix; the message names the file and the record."""


class ModelNotAvailable(RuntimeError):
    """The requested model cannot be loaded (not cached offline, not a detector, a package missing)."""


class ImageError(ValueError):
    """An image file that cannot be used; the message is one line naming the file and the problem."""


class TrainingInterrupted(RuntimeError):
    """SIGINT / SIGTERM stopped a training run after saving a checkpoint; `exit_code` is 128 + the signal's number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


USER_ERRORS = (ConfigError, DataError, ModelNotAvailable, FloatingPointError, ImageError)
