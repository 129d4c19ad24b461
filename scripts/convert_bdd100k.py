"""BDD100K detection labels -> COCO json, with the official toolkit's rules (same as `detr-convert-bdd100k`):
python scripts/convert_bdd100k.py --labels det_val.json --output det_val_coco.json [--box-convention exclusive]"""

from recipe.cli.main import convert_bdd100k_main

if __name__ == "__main__":
    convert_bdd100k_main()
