"""Drop-in replacements for code people already use: change an import, keep the calls.

- `vtalign.compat.platonic`: platonic-rep's `AlignmentMetrics`, `compute_score`,
  `prepare_features`, `remove_outliers`.
"""
