"""Detect objects in new images with a trained model folder (or any AutoModelForObjectDetection checkpoint):

python scripts/predict.py --model outputs/demo --images data/demo/val/images --output preds/ [--threshold 0.3]
    [--format coco|bdd100k] [--batch_size 8] [--device auto]

Writes preds/predictions.json (COCO results with file names, or a BDD100K frame list) and preds/images/<name>
with the boxes drawn. With --threshold 0 the results file scores (scripts/evaluate.py) as the evaluation does.
"""

from recipe.cli.main import predict_main

if __name__ == "__main__":
    predict_main()
