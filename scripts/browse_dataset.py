"""Draw the ground-truth boxes of a sample of a dataset, optionally after a config's training augmentation:

python scripts/browse_dataset.py --ann data/demo/train/annotations.json --images data/demo/train/images \
    [--augment configs/demo.yaml] [--num_images 12] --output grid.jpg
"""

from recipe.cli.main import browse_dataset_main

if __name__ == "__main__":
    browse_dataset_main()
