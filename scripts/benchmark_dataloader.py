"""Dataloader throughput: python scripts/benchmark_dataloader.py CONFIG.yaml --num-batches N [--field value ...]"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from recipe.benchmark import benchmark_dataloader
from recipe.cli import main_guard
from recipe.config import parse_config
from recipe.train import prepare_demo_data

if __name__ == "__main__":
    argv = sys.argv[1:]
    num_batches = 50
    if "--num-batches" in argv:
        i = argv.index("--num-batches")
        num_batches = int(argv[i + 1])
        del argv[i:i + 2]
    with main_guard():
        data_args, model_args, train_args, _ = parse_config(argv)
        prepare_demo_data(data_args)
        result = benchmark_dataloader(data_args, model_args, train_args, num_batches)
    print(f"{result['images']} images in {result['batches']} batches, {result['num_workers']} workers")
    print("per image: " + ", ".join(f"{k}={result[k]:.2f}" for k in ("decode_ms", "augment_ms", "process_ms",
                                                                        "collate_ms")))
    print(f"images_per_s={result['images_per_s']:.1f}")
