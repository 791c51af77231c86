"""Drop-in replacements for code people already use: change an import, keep the calls.

- `vtalign.compat.platonic`: platonic-rep's `AlignmentMetrics`, `compute_score`,
  `prepare_features`, `remove_outliers` (all layer pairs in one pass);
- `vtalign.compat.softdtw`: pytorch-softdtw-cuda's `SoftDTW`;
- `vtalign.compat.twins`: VT-TWINS' `S2DTW` loss and `TDA` augmentation;
- `vtalign.compat.open_clip`: open_clip's `ClipLoss` (logits never stored).
- `vtalign.compat.calibrated_similarity`: calibrated-similarity's `calibrate`,
  `calibrate_layers` (the permutation null of every layer pair at once).

Each module's docstring lists where it deliberately differs from upstream.
"""
