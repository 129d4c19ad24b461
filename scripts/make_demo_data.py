"""Generate the synthetic traffic-scenes demo dataset (COCO json or BDD100K frame lists)."""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipe.data.synthetic import make_demo_dataset  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output", required=True, help="directory to write train/ and val/ into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=400)
    p.add_argument("--num-val", type=int, default=50)
    p.add_argument("--image-size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    p.add_argument("--format", choices=["coco", "bdd100k"], default="coco",
                   help="bdd100k: BDD100K frame lists (inclusive box2d) instead of COCO json")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    summary = make_demo_dataset(args.output, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                                image_size=tuple(args.image_size), fmt=args.format)
    for split, s in summary.items():
        classes = ", ".join(f"{k}={v}" for k, v in s["per_class"].items())
        print(f"{split}: {s['images']} images ({s['empty_images']} empty), {s['boxes']} boxes [{classes}]")
    print(f"wrote {args.output} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
