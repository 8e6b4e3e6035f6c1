"""The live modes, one module each over a shared base (base.py): what the model plays,
frame by frame. `make_composer` builds the one a session asks for."""

from __future__ import annotations

from rnnrbm_live.live.modes.accompany import AccompanyMode
from rnnrbm_live.live.modes.answer import ContinueMode
from rnnrbm_live.live.modes.base import Composer
from rnnrbm_live.live.modes.generate import GenerateMode

MODES = ("continue", "generate", "accompany")
_CLASSES = {"continue": ContinueMode, "generate": GenerateMode, "accompany": AccompanyMode}


def make_composer(mode: str, session, grid, sender, notes, controls, *,
                  answer_frames: int | None = None, max_answer_frames: int = 128,
                  compute_s: float = 0.02, **common) -> Composer:
    """The composer for `mode`; `common` are the keyword arguments every mode takes."""
    if mode not in _CLASSES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    extra: dict = {}
    if mode == "continue":
        extra = {"answer_frames": answer_frames, "max_answer_frames": max_answer_frames}
    elif mode == "accompany":
        extra = {"compute_s": compute_s}
    return _CLASSES[mode](session, grid, sender, notes, controls, **common, **extra)


__all__ = ["MODES", "Composer", "ContinueMode", "GenerateMode", "AccompanyMode",
           "make_composer"]
