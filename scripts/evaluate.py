"""Score detections with COCOeval, from a results file or by running a saved model:

python scripts/evaluate.py --gt GT.json --predictions RESULTS.json --output metrics.json [--format bdd100k]
python scripts/evaluate.py --model DIR --images IMG_DIR --ann ANN.json --output metrics.json [--predictions-out R.json]
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from recipe.cli import main_guard  # noqa: E402
from recipe.evaluate import evaluate_checkpoint, evaluate_files, print_metrics  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", help="ground truth: COCO json (or a BDD100K frame list with --format bdd100k)")
    parser.add_argument("--predictions", help="COCO results json [{image_id, category_id, bbox, score}]")
    parser.add_argument("--model", help="a saved model folder (output_dir of scripts/train.py)")
    parser.add_argument("--images", help="with --model: the image folder")
    parser.add_argument("--ann", help="with --model: the annotation file (COCO or BDD100K)")
    parser.add_argument("--predictions-out", help="with --model: also write the predictions here")
    parser.add_argument("--predictions-format", default="coco", choices=["coco", "bdd100k"],
                        help="--predictions-out as COCO results or as a BDD100K frame list (labels with a score)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--score-threshold", type=float, default=0.0)
    parser.add_argument("--output", help="where to write the metrics JSON")
    parser.add_argument("--metric-backend", default="pycocotools", choices=["pycocotools", "faster_coco_eval"],
                        help="faster_coco_eval: same numbers, faster (pip install -e '.[faster-coco-eval]')")
    parser.add_argument("--format", default="coco", choices=["coco", "bdd100k"],
                        help="--gt/--predictions: bdd100k = both are BDD100K frame lists, labels with a score")
    parser.add_argument("--box-convention", default="inclusive", choices=["inclusive", "exclusive"],
                        help="BDD100K box2d: inclusive (w = x2 - x1 + 1, current) or exclusive (2021 toolkit)")
    args = parser.parse_args()
    if bool(args.model) == bool(args.gt and args.predictions) or (args.model and not (args.images and args.ann)):
        parser.error("give either --gt and --predictions, or --model with --images and --ann")
    with main_guard():
        if args.model:
            metrics = evaluate_checkpoint(args.model, args.images, args.ann, args.output, args.predictions_out,
                                          args.batch_size, args.num_workers, box_convention=args.box_convention,
                                          score_threshold=args.score_threshold, backend=args.metric_backend,
                                          predictions_format=args.predictions_format)
        else:
            metrics = evaluate_files(args.gt, args.predictions, args.output, args.format, args.box_convention,
                                     args.metric_backend)
        if os.environ.get("RANK", "0") == "0":  # once, under a multi-process launch
            print_metrics(metrics)
