"""Check a dataset without training: the builder's reading, path, image and box checks and its data report.

`scripts/check_data.py --ann FILE --images DIR [--format coco|bdd100k]` or `--dataset PATH_OR_ID` (every split)
for users' CI pipelines. Every image
is decoded (unless `--image_check` says otherwise). Exit code 0: clean; 1: problems found (bad images,
boxes clamped or dropped: training would run, on the data after those changes); 2: unusable (the one-line
error says why: broken JSON, unknown category, path outside the image folder, no usable image, ...).
"""

from __future__ import annotations

import json

from recipe.config.command_arguments import CheckDataArguments
from recipe.data.builder import read_split
from recipe.data.sanitize import format_report
from recipe.data.source import data_source, open_splits

# Report keys that mean "the data was changed or dropped on the way in".
PROBLEM_KEYS = ("images_bad_dropped", "boxes_dropped_degenerate", "boxes_clamped")




def check_data(args: CheckDataArguments, dataset_args=None) -> int:
    """Run the checks, print the report (each split of `--dataset`); -> exit code 0 (clean) or 1 (problems).
    Unusable data raises DataError."""
    source = data_source(dataset_args, annotation_file=args.ann, image_root=args.images,
                         annotation_format=args.format, box_convention=args.box_convention,
                         bdd_image_size=args.bdd_image_size, needs="the data to check: --ann FILE with --images DIR")
    dataset = source.dataset
    splits = open_splits(source)
    reports = {}
    for title, split in splits.items():
        _, _, reports[title] = read_split(split, image_check=args.image_check, skip_bad_images=True,
                                          workers=args.workers)
        print(format_report(reports[title], title))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(reports if dataset else reports[args.ann], f, indent=2)
    problems = {key: sum(r.get(key, 0) for r in reports.values()) for key in PROBLEM_KEYS}
    problems = {key: value for key, value in problems.items() if value}
    if problems:
        print("problems: " + ", ".join(f"{key}={value}" for key, value in problems.items()))
        return 1
    print(f"ok: {sum(r['images'] for r in reports.values())} images, "
          f"{sum(r['boxes_kept'] for r in reports.values())} boxes")
    return 0
