"""One training run end to end: its data, preflight, the run itself, its output folder, the model card,
its figures and the Hub push."""
