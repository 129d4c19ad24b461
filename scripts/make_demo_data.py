"""Generate the synthetic traffic-scenes demo dataset, COCO json or BDD100K frame lists (same as
`detr-make-demo-data`): python scripts/make_demo_data.py --output data/demo [--format bdd100k]"""

from recipe.cli.main import make_demo_data_main

if __name__ == "__main__":
    make_demo_data_main()
