"""Detect objects in new images with a trained model folder (or any AutoModelForObjectDetection checkpoint):

python scripts/predict.py --model outputs/demo --images data/demo/val/images --output preds/ [--threshold 0.3]
    [--format coco|bdd100k] [--batch_size 8] [--device auto]

Writes preds/predictions.json (COCO results with file names, or a BDD100K frame list) and preds/images/<name>
with the boxes drawn. With --threshold 0 the results file scores (scripts/evaluate.py) as the evaluation does.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from transformers import HfArgumentParser

from recipe.cli import main_guard
from recipe.predict import PredictArguments, predict

if __name__ == "__main__":
    (args,) = HfArgumentParser(PredictArguments, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter).parse_args_into_dataclasses()
    with main_guard():
        predict(args)
