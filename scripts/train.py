"""Fine-tune a DETR-family detector: python scripts/train.py CONFIG.yaml [--field value ...] (same as `detr-train`)."""

from recipe.cli.main import train_main

if __name__ == "__main__":
    train_main()
