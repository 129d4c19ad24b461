"""Draw the ground-truth boxes of a sample of a dataset, optionally after a config's training augmentation:

python scripts/browse_dataset.py --ann data/demo/train/annotations.json --images data/demo/train/images \
    [--augment configs/demo.yaml] [--num_images 12] --output grid.jpg
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from transformers import HfArgumentParser

from recipe.browse import BrowseArguments, browse_dataset
from recipe.cli import main_guard

if __name__ == "__main__":
    (args,) = HfArgumentParser(BrowseArguments, description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter).parse_args_into_dataclasses()
    with main_guard():
        browse_dataset(args)
