"""Looking at data before training: the dataset check and the dataset browser."""
