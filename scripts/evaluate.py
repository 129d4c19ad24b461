"""Score detections with COCOeval:
python scripts/evaluate.py --gt GT.json --predictions RESULTS.json --output metrics.json [--format bdd100k]"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from recipe.cli import main_guard  # noqa: E402
from recipe.evaluate import evaluate_files, print_metrics  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gt", required=True, help="COCO ground-truth json")
    parser.add_argument("--predictions", required=True, help="COCO results json: [{image_id, category_id, bbox, score}]")
    parser.add_argument("--output", help="where to write the metrics JSON")
    parser.add_argument("--format", default="coco", choices=["coco", "bdd100k"],
                        help="bdd100k: both files are BDD100K frame lists, predicted labels with a score")
    parser.add_argument("--box-convention", default="inclusive", choices=["inclusive", "exclusive"],
                        help="BDD100K box2d: inclusive (w = x2 - x1 + 1, current) or exclusive (2021 toolkit)")
    args = parser.parse_args()
    with main_guard():
        print_metrics(evaluate_files(args.gt, args.predictions, args.output, args.format, args.box_convention))
