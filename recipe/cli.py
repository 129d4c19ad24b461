"""Shared entry-point behaviour: input errors become one clear line and exit code 2, not a traceback."""

from __future__ import annotations

import contextlib
import sys

from .config import ConfigError
from .data.coco import DataError
from .modeling import ModelNotAvailable


@contextlib.contextmanager
def main_guard():
    try:
        yield
    except (ConfigError, DataError, ModelNotAvailable, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
