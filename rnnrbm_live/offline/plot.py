"""Piano-roll pictures (PNG) of a primer and its continuation.

matplotlib is an optional extra (`pip install "rnnrbm-live[plot]"`), so it is imported
only when a plot is asked for; without it `plot_roll` returns the install hint instead of
raising, and the caller still writes its MIDI files. pyplot is never imported: a bare
Figure needs no GUI backend and keeps no global state between plots.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

LOWEST_PITCH = 21
INSTALL_HINT = 'plots need matplotlib: pip install "rnnrbm-live[plot]"'
PRIMER_COLOR = "#4c72b0"
CONTINUATION_COLOR = "#dd8452"
_MARGIN_NOTES = 2  # rows of air above and below the highest and lowest note


def plot_roll(path: Path, roll: np.ndarray, *, primer_frames: int,
              bar_frames: Fraction, title: str) -> str | None:
    """Save a piano-roll PNG of roll [T, 88]; the first primer_frames frames are the
    primer. x: time in bars from 1; y: MIDI note numbers. Returns None, or the one-line
    hint when matplotlib is not installed."""
    try:
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        return INSTALL_HINT

    n_frames = len(roll)
    bars = n_frames / float(bar_frames) if n_frames else 1.0
    # Cell value 1 = primer, 2 = continuation, so one image shows both in two colours;
    # silence is transparent so the bar lines behind it show.
    image = np.asarray(roll, dtype=np.uint8).copy()
    image[primer_frames:] *= 2
    fig = Figure(figsize=(min(24.0, max(6.0, 0.5 * bars + 2)), 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(image.T, aspect="auto", origin="lower", interpolation="nearest",
              cmap=ListedColormap([(1, 1, 1, 0), PRIMER_COLOR, CONTINUATION_COLOR]),
              vmin=0, vmax=2,
              extent=(1, 1 + bars, LOWEST_PITCH - 0.5, LOWEST_PITCH + 87.5))
    _decorate(ax, roll, primer_frames, bar_frames, bars)
    handles = [Patch(color=CONTINUATION_COLOR, label="continuation")]
    if primer_frames:
        handles.insert(0, Patch(color=PRIMER_COLOR, label="primer"))
    # Outside the axes, so it never hides notes.
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0, fontsize="small", frameon=False)
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    # No Software stamp: the same roll then gives the same bytes on every matplotlib.
    fig.savefig(path, format="png", metadata={"Software": None})
    return None


def _decorate(ax, roll: np.ndarray, primer_frames: int, bar_frames: Fraction,
              bars: float) -> None:
    """Axes, bar lines, note range and the primer/continuation divider."""
    played = np.nonzero(np.asarray(roll).any(axis=0))[0]
    low, high = (played.min(), played.max()) if played.size else (39, 51)  # C4 +- an octave
    ax.set_ylim(LOWEST_PITCH + low - _MARGIN_NOTES - 0.5,
                LOWEST_PITCH + high + _MARGIN_NOTES + 0.5)
    ax.set_xlim(1, 1 + bars)
    ax.set_xlabel("bar")
    ax.set_ylabel("midi note")
    for bar in range(2, int(np.ceil(bars)) + 1):
        ax.axvline(bar, color="0.85", linewidth=0.6, zorder=0)
    if primer_frames:
        ax.axvline(1 + primer_frames / float(bar_frames), color="black", linewidth=1.5,
                   linestyle="--")
