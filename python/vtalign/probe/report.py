"""Probe reports: heat map and scaling-curve PNGs, JSON and markdown summaries.

Every file is written to a temporary name in the target folder and moved into
place with os.replace, so an interrupted run never leaves a half-written report.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vtalign._atomic import atomic_write, write_json, write_text  # noqa: F401  (re-exported)
from vtalign._optional import MissingDependency, require

PLOT_PURPOSE = "drawing plots"


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend; MissingDependency without matplotlib."""
    matplotlib = require("matplotlib", None, PLOT_PURPOSE)
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", None, PLOT_PURPOSE, package="matplotlib")


def plots_unavailable() -> MissingDependency | None:
    """The error plotting would raise when matplotlib cannot be imported, else None.

    Reports check this before writing anything, so the summaries are written
    (and say whether plots follow) even on an install without matplotlib.
    """
    try:
        _pyplot()
    except MissingDependency as e:
        return e
    return None


def skipped_plots_line(cmd: str, reason: str | MissingDependency) -> str:
    """The one line a command prints when its summaries were written but its plots were not."""
    return f"vtalign {cmd}: plots skipped (summaries written): {reason}"


def best_cell(m: torch.Tensor) -> tuple[int, int]:
    """(row, column) of the largest entry of a `[R, C]` matrix, NaN entries (missing) skipped."""
    flat = int(torch.argmax(torch.nan_to_num(m, nan=-math.inf)))
    return flat // m.shape[1], flat % m.shape[1]


def heatmap_png(path: str, scores: torch.Tensor, best: tuple[int, int], *, names_a=None, names_b=None,
                title: str = "", label_a: str = "A layer", label_b: str = "B layer") -> str:
    """Heat map of a `[La, Lb]` score matrix with the best pair outlined.

    Raises MissingDependency (nothing written) when matplotlib cannot be imported.
    """
    plt = _pyplot()
    s = scores.detach().double().cpu().numpy()
    la, lb = s.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * lb, 1.0 + 0.5 * la), dpi=120)
    im = ax.imshow(s, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.05)
    ax.set_xticks(range(lb), names_b or [str(j) for j in range(lb)])
    ax.set_yticks(range(la), names_a or [str(i) for i in range(la)])
    ax.set_xlabel(label_b)
    ax.set_ylabel(label_a)
    i, j = best
    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.text(j, i, f"{s[i, j]:.2f}", ha="center", va="center", color="white", fontsize=8, weight="bold")
    ax.set_title(title or f"best pair ({i}, {j}): {s[i, j]:.3f}", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def scaling_png(path: str, n_frames, n_captions, scores, predict: Callable | None = None, *,
                title: str = "") -> str:
    """Alignment against frames, one curve per caption count, measured points and
    (when `predict(n_frames, n_captions)` is given) the fitted law as lines.

    Raises MissingDependency (nothing written) when matplotlib cannot be imported.
    """
    import numpy as np

    plt = _pyplot()
    f = np.asarray(n_frames, dtype=float)
    c = np.asarray(n_captions, dtype=float)
    s = np.asarray(scores, dtype=float)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=120)
    cmap = plt.get_cmap("viridis")
    caps = sorted(set(c.tolist()))
    for n, cap in enumerate(caps):
        color = cmap(n / max(1, len(caps) - 1))
        m = c == cap
        order = np.argsort(f[m])
        ax.plot(f[m][order], s[m][order], "o", color=color, label=f"{int(cap)} caption(s)")
        if predict is not None:
            grid = np.geomspace(f.min(), f.max() * 4, 64)
            ax.plot(grid, predict(grid, np.full_like(grid, cap)), "-", color=color, alpha=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("frames")
    ax.set_ylabel("alignment (best layer pair)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path
