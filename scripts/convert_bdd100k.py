"""BDD100K detection labels -> COCO json, with the official toolkit's rules:
python scripts/convert_bdd100k.py --labels det_val.json --output det_val_coco.json [--box-convention exclusive]"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from recipe.cli import main_guard
from recipe.data.bdd100k import BOX_CONVENTIONS, convert_file

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, help="BDD100K / Scalabel label json (a list of frames)")
    parser.add_argument("--output", required=True, help="where to write the COCO json")
    parser.add_argument("--box-convention", default="inclusive", choices=list(BOX_CONVENTIONS),
                        help="inclusive: w = x2 - x1 + 1 (current toolkit); exclusive: w = x2 - x1 (2021 toolkit)")
    args = parser.parse_args()
    with main_guard():
        counts = convert_file(args.labels, args.output, args.box_convention)
        print(f"wrote {args.output}")
        for key, value in counts.items():
            print(f"  {key:<24} {value:>9,}")
