"""Console entry points (`detr-train`, `detr-evaluate`, ... in setup.cfg; `python scripts/X.py` calls the same).

Each `*_main(argv=None)` answers `--help` from the argument dataclasses alone (`recipe/cli/help.py`: no torch),
else parses with `recipe.config.load.parse_command` (the one table of commands) and calls one recipe function
inside `main_guard`, which turns the recipe's own errors into one line on stderr and exit code 2.
Logging is set up here, by the entry point, never by the library.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path

from recipe.core.distributed import end_process_group
from recipe.core.errors import USER_ERRORS, TrainingInterrupted


def setup_logging() -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)


@contextlib.contextmanager
def main_guard():
    setup_logging()
    try:
        yield
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # outside a training loop (which saves and stops on its own): one line, no traceback
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    end_process_group()


def help_if_asked(argv: list[str] | None, prog: str) -> None:
    """-h / --help: print the command's help and exit 0, before torch or transformers are imported (seconds)."""
    from recipe.cli.help import asks_for_help, print_help_and_exit

    if asks_for_help(argv):
        print_help_and_exit(prog, argv)


def train_main(argv: list[str] | None = None) -> None:
    """detr-train [CONFIG.yaml] [--field value ...]: fine-tune, evaluate, write a Hub-style model folder."""
    help_if_asked(argv, "detr-train")
    with main_guard():
        from recipe.config.load import parse_config
        from recipe.training.run import run

        run(*parse_config(argv))


def evaluate_main(argv: list[str] | None = None) -> None:
    """detr-evaluate: score a results file (--gt --predictions) or a saved model (--model --images --ann)."""
    help_if_asked(argv, "detr-evaluate")
    with main_guard():
        from recipe.config.load import parse_evaluate_args
        from recipe.inference.tiled_evaluation import evaluate_command

        metrics = evaluate_command(*parse_evaluate_args(argv))
        from recipe.core.distributed import is_main_process

        if is_main_process():  # once, under a multi-process launch
            from recipe.evaluation.evaluate import print_metrics

            print_metrics(metrics)


def convert_bdd100k_main(argv: list[str] | None = None) -> None:
    """detr-convert-bdd100k --labels det_val.json --output det_val_coco.json [--box-convention exclusive]"""
    help_if_asked(argv, "detr-convert-bdd100k")
    with main_guard():
        from recipe.config.load import parse_command
        from recipe.data.bdd100k import convert_file

        (args,) = parse_command(argv, "detr-convert-bdd100k")
        counts = convert_file(args.labels, args.output, args.box_convention)
        print(f"wrote {args.output}")
        for key, value in counts.items():
            print(f"  {key:<24} {value:>9,}")


def make_demo_data_main(argv: list[str] | None = None) -> None:
    """detr-make-demo-data --output DIR [--format bdd100k] [--large_frame]: the synthetic traffic-scenes demo data."""
    help_if_asked(argv, "detr-make-demo-data")
    with main_guard():
        from recipe.config.load import parse_command
        from recipe.data.synthetic import make_demo_dataset

        (args,) = parse_command(argv, "detr-make-demo-data")
        start = time.perf_counter()
        summary = make_demo_dataset(args.output, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                                    image_size=tuple(args.image_size), fmt=args.annotation_format,
                                    rare_class=args.rare_class, rare_fraction=args.rare_fraction,
                                    large_frame=args.large_frame)
        for split, s in summary.items():
            classes = ", ".join(f"{k}={v}" for k, v in s["per_class"].items())
            print(f"{split}: {s['images']} images ({s['empty_images']} empty), {s['boxes']} boxes [{classes}]")
        print(f"wrote {args.output} in {time.perf_counter() - start:.1f}s")


def predict_main(argv: list[str] | None = None) -> None:
    """detr-predict --model DIR_OR_ID (--images PATH_OR_FOLDER_OR_GLOB | --dataset X [--split S]) --output DIR"""
    help_if_asked(argv, "detr-predict")
    with main_guard():
        from recipe.config.load import parse_command
        from recipe.inference.predict import predict

        args, dataset_args, tile_args = parse_command(argv, "detr-predict")
        predict(args, dataset_args, tile_args)


def check_data_main(argv: list[str] | None = None) -> None:
    """detr-check-data (--ann ANN --images DIR | --dataset X): exit 0 clean, 1 problems found, 2 unusable."""
    help_if_asked(argv, "detr-check-data")
    with main_guard():
        from recipe.config.load import parse_command
        from recipe.tools.check_dataset import check_data

        args, dataset_args = parse_command(argv, "detr-check-data")
        sys.exit(check_data(args, dataset_args))


def browse_dataset_main(argv: list[str] | None = None) -> None:
    """detr-browse-dataset (--ann ANN --images DIR | --dataset X [--split S]) [--augment CONFIG] --output grid.jpg"""
    help_if_asked(argv, "detr-browse-dataset")
    with main_guard():
        from recipe.config.load import parse_command
        from recipe.tools.browse import browse_dataset

        args, dataset_args = parse_command(argv, "detr-browse-dataset")
        browse_dataset(args, dataset_args)


def export_main(argv: list[str] | None = None) -> None:
    """detr-export --model DIR_OR_ID --output model.onnx|model.xml [--format openvino] [--int8 + data flags]"""
    help_if_asked(argv, "detr-export")
    with main_guard():
        from recipe.config.load import parse_command
        from recipe.inference.export import export_model
        from recipe.inference.measure import print_export

        args, data_args = parse_command(argv, "detr-export")
        # The exporter's passes log every step, and the opset conversion's route (export_model reads back the opset
        # written and says when it is not the one asked for).
        for name in ("onnx_ir", "onnxscript", "torch.onnx"):
            logging.getLogger(name).setLevel(logging.ERROR)
        print_export(args, export_model(args, data_args))


def compare_main(argv: list[str] | None = None) -> None:
    """detr-compare [PLAN.yaml] --families A B ... [--budget 30m] [training flags]: rank families on your data."""
    help_if_asked(argv, "detr-compare")
    with main_guard():
        from recipe.config.compare_plan import parse_compare
        from recipe.tools.compare import compare, print_leaderboard

        args, families, training = parse_compare(sys.argv[1:] if argv is None else argv)
        rows = compare(args, families, training)
        print_leaderboard(rows, Path(args.output_dir))


def search_main(argv: list[str] | None = None) -> None:
    """detr-search [CONFIG.yaml] --trials N [--budget 40steps 80steps] [--output_dir D] [training flags]: optuna."""
    argv = sys.argv[1:] if argv is None else list(argv)
    help_if_asked(argv[1:] if argv and argv[0].endswith((".yaml", ".yml")) else argv, "detr-search")
    with main_guard():
        from recipe.config.search_plan import parse_search
        from recipe.tools.search import search
        from recipe.tools.search_report import print_search

        args, training = parse_search(argv)
        search(args, training)
        print_search(Path(args.output_dir))
