"""Fine-tune a DETR-family detector: python scripts/train.py CONFIG.yaml [--field value ...]"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from recipe.cli import main_guard  # noqa: E402
from recipe.config import parse_config  # noqa: E402
from recipe.train import run  # noqa: E402

if __name__ == "__main__":
    with main_guard():
        run(*parse_config(sys.argv[1:]))
