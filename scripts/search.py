"""Search hyper-parameters with optuna (Trainer.hyperparameter_search), each trial scored by eval_map.

python scripts/search.py configs/demo.yaml --trials 20 --budget 300steps 600steps --output_dir outputs/search

Writes OUTPUT_DIR/search.db (the study: run again to add the trials missing), trial-<n>/, search.md / .json and
best.yaml, a training config: python scripts/train.py OUTPUT_DIR/best.yaml. Needs pip install -e '.[search]'.
"""

from recipe.cli.main import search_main

if __name__ == "__main__":
    search_main()
