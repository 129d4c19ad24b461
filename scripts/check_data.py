"""Check a dataset as the recipe will read it, without training (every image decoded):
python scripts/check_data.py --ann ANN.json --images IMG_DIR [--format coco|bdd100k] [--report report.json]
Exit code: 0 clean, 1 problems found (listed), 2 unusable (one-line error)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from transformers import HfArgumentParser

from recipe.check import CheckDataArguments, check_data
from recipe.cli import main_guard

if __name__ == "__main__":
    with main_guard():
        (args,) = HfArgumentParser(CheckDataArguments, description=__doc__).parse_args_into_dataclasses()
        sys.exit(check_data(args))
