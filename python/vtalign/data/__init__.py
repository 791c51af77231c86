"""Synthetic data with known ground truth (no downloads)."""
