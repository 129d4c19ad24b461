"""Shared entry-point behaviour: logging, and user errors as one clear line with exit code 2."""

from __future__ import annotations

import contextlib
import logging
import sys

from .errors import USER_ERRORS


def setup_logging() -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)


@contextlib.contextmanager
def main_guard():
    setup_logging()
    try:
        yield
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
