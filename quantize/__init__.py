"""From a training run to verified model bundles (float32, int8, pruned int8), and their benchmark."""
