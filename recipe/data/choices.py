"""The names the data layer accepts, in one registry: annotation formats of an annotation file, results-file
formats, BDD100K box conventions, image checks and dataset splits. No imports, so the argument dataclasses (and a
fast `--help`) read their choices from here."""

ANNOTATION_FORMATS = ("auto", "coco", "bdd100k")  # an annotation file + image folder; auto: by the JSON's shape
RESULT_FORMATS = ("coco", "bdd100k")  # results files read by evaluate, written by predict and --predictions_out
BOX_CONVENTIONS = {"inclusive": 1.0, "exclusive": 0.0}  # BDD100K box2d: added to x2 - x1 to get a width
IMAGE_CHECKS = ("decode", "header", "exists")
SPLITS = ("train", "validation")
