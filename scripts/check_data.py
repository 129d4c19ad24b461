"""Check a dataset as the recipe will read it, without training (every image decoded):
python scripts/check_data.py --ann ANN.json --images IMG_DIR [--format coco|bdd100k] [--report report.json]
Exit code: 0 clean, 1 problems found (listed), 2 unusable (one-line error)."""

from recipe.cli.main import check_data_main

if __name__ == "__main__":
    check_data_main()
