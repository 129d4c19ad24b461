"""The training loop's parts around `transformers.Trainer`: the detection trainer and its callbacks, the
optimizer's parameter groups and the EMA of the weights."""
