"""Piano-roll pictures (PNG) of a primer and its continuation.

matplotlib is an optional extra (`pip install "rnnrbm-live[plot]"`), so it is imported
only when a plot is asked for; without it `plot_roll` returns the install hint instead of
raising, and the caller still writes its MIDI files. pyplot is never imported: a bare
Figure needs no GUI backend and keeps no global state between plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LOWEST_PITCH = 21
INSTALL_HINT = 'plots need matplotlib: pip install "rnnrbm-live[plot]"'
PRIMER_COLOR = "#4c72b0"
CONTINUATION_COLOR = "#dd8452"
_MARGIN_NOTES = 2  # rows of air above and below the highest and lowest note


def plot_roll(path: Path, roll: np.ndarray, *, primer_frames: int,
              bar_frames: list[float], title: str, subtitle: str = "",
              generated: bool = False) -> str | None:
    """Save a piano-roll PNG of roll [T, 88]; the first primer_frames frames are the
    primer, the rest "continuation" (or "generated"). bar_frames: where each bar line
    falls, in frames, from the first (bar 1) to the last. Returns None, or the one-line
    hint when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return INSTALL_HINT
    fig = roll_figure(Figure, roll, primer_frames=primer_frames, bar_frames=bar_frames,
                      title=title, subtitle=subtitle, generated=generated)
    # No Software stamp: the same roll then gives the same bytes on every matplotlib.
    fig.savefig(path, format="png", metadata={"Software": None})
    return None


def roll_figure(Figure, roll: np.ndarray, *, primer_frames: int, bar_frames: list[float],
                title: str, subtitle: str, generated: bool):
    """The plot as a matplotlib Figure. x is in frames, labelled with bar numbers at the
    bar lines themselves (a 7/8 bar on a quarter-note grid is 3.5 frames long); the
    title is two lines, file and settings, so even a short plot holds it."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n_frames = max(len(roll), 1)
    bars = max(len(bar_frames) - 1, 1)
    # Cell value 1 = primer, 2 = continuation, so one image shows both in two colours;
    # silence is transparent so the bar lines behind it show.
    image = np.asarray(roll, dtype=np.uint8).copy()
    image[primer_frames:] *= 2
    fig = Figure(figsize=(min(24.0, max(7.0, 0.5 * bars + 3)), 4.8), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(image.T, aspect="auto", origin="lower", interpolation="nearest",
              cmap=ListedColormap([(1, 1, 1, 0), PRIMER_COLOR, CONTINUATION_COLOR]),
              vmin=0, vmax=2, extent=(0, n_frames, LOWEST_PITCH - 0.5, LOWEST_PITCH + 87.5))
    _decorate(ax, roll, primer_frames, bar_frames, n_frames)
    label = "generated" if generated else "continuation"
    handles = [Patch(color=CONTINUATION_COLOR, label=label)]
    if primer_frames:
        handles.insert(0, Patch(color=PRIMER_COLOR, label="primer"))
    # Outside the axes, so it never hides notes.
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0, fontsize="small", frameon=False)
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize="medium")
    fig.tight_layout()
    return fig


def _decorate(ax, roll: np.ndarray, primer_frames: int, bar_frames: list[float],
              n_frames: int) -> None:
    """Axes, bar lines labelled with bar numbers, note range and the primer's end."""
    played = np.nonzero(np.asarray(roll).any(axis=0))[0]
    low, high = (played.min(), played.max()) if played.size else (39, 51)  # C4 +- an octave
    ax.set_ylim(LOWEST_PITCH + low - _MARGIN_NOTES - 0.5,
                LOWEST_PITCH + high + _MARGIN_NOTES + 0.5)
    ax.set_xlim(0, n_frames)
    ax.set_xlabel("bar")
    ax.set_ylabel("midi note")
    lines = [f for f in bar_frames[:-1] if f < n_frames]  # each bar's first line
    step = max(1, len(lines) // 32)  # at most ~32 labels, every step-th bar
    ax.set_xticks(lines[::step], [str(1 + k) for k in range(0, len(lines), step)])
    for frame in bar_frames[1:]:
        ax.axvline(frame, color="0.85", linewidth=0.6, zorder=0)
    if primer_frames:
        ax.axvline(primer_frames, color="black", linewidth=1.5, linestyle="--")
