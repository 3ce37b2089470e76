"""Frozen feature extraction with an on-disk cache, and pseudo-anomaly features."""
