"""Training the scoring heads on frozen features: data, balanced batches, the base loop."""
