"""Score detections with COCOeval, from a results file or by running a saved model (same as `detr-evaluate`):

python scripts/evaluate.py --gt GT.json --predictions RESULTS.json --output metrics.json [--format bdd100k]
python scripts/evaluate.py --model DIR --images IMG_DIR --ann ANN.json --output metrics.json [--predictions-out R.json]

Either mode takes --plots DIR: the error-analysis figures training writes, each with its numbers as JSON.
"""

from recipe.cli.main import evaluate_main

if __name__ == "__main__":
    evaluate_main()
