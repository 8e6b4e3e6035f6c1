"""Offline generation: continue a MIDI clip (Magenta Studio's "Continue") or generate from
scratch, as Python functions (the `continue` and `generate` subcommands call them).

Grid and length rules (docs/offline.md says the same for users):
- Everything lives on the model's grid: card.frames_per_beat frames per beat (2 for
  nottingham = eighth notes, 1 for jsb_chorales = quarter notes). A bar is
  numerator * 4 / denominator beats of the time signature (the primer's first one;
  4/4 or --time-signature for generate).
- The primer occupies whole bars: its roll (which ends where its last note ends) is padded
  with silence up to the next bar line, counted from the start of the file, so the
  continuation starts on a downbeat. When a bar is not a whole number of frames (7/8 on a
  quarter-note grid) every bar line rounds up to the next frame.
- The continuation is exactly `bars` bars: its frames run from the primer's last bar line
  to the bar line `bars` later, and the written file ends there even when the last frames
  are silent (write_midi puts end_of_track at the roll's last frame).

The bundled models learned music transposed to C, so the primer is shifted to C before the
model listens to it and every generated frame is shifted back by the same amount: the
continuation stays in the primer's key.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rnnrbm_live.midi import keys
from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.reader import read_midi
from rnnrbm_live.midi.roll import LOWEST_PITCH, N_KEYS, MidiRoll
from rnnrbm_live.model.session import StepSession
from rnnrbm_live.offline.output import write_all

DEFAULT_MODEL = "nottingham"
DEFAULT_MAX_PRIMER_BARS = 64
MAX_BARS = 1024          # a typo such as --bars 80000 should not run for an hour
MAX_VARIATIONS = 256
GENERATE_TICKS_PER_BEAT = 480
GENERATE_BPM = 120.0


# --------------------------------------------------------------------------- the result


@dataclass
class Continuation:
    """What continue_midi or generate made; the rolls are in the primer's own key.

    generate returns one too, with an empty primer (0 frames) and key None.
    """

    primer: np.ndarray                    # [P, 88] uint8: the primer, padded to whole bars
    rolls: np.ndarray                     # [K, C, 88] uint8: one continuation per variation
    frames_per_beat: int                  # the model's grid
    time_signature: tuple[int, int]
    bar_frames: Fraction                  # frames per bar on that grid
    primer_bars: int
    bars: int                             # bars of each continuation
    tempo_map: list[tuple[int, float]]    # (frame, bpm) of primer + continuation
    key: str | None                       # the primer's estimated key, e.g. "E major"
    shift: int                            # semitones the primer was moved by to reach C
    key_signature: str | None             # copied from the primer file, if it had one
    channel: int                          # 0-based MIDI channel of the written notes
    ticks_per_beat: int
    model: str
    provider: str                         # the onnxruntime provider that ran the model
    seed: int                             # drawn at random when none was given
    temperature: float
    paths: list[Path] = field(default_factory=list)   # MIDI files written, one per variation
    plots: list[Path] = field(default_factory=list)
    wavs: list[Path] = field(default_factory=list)

    @property
    def primer_frames(self) -> int:
        return len(self.primer)

    def full(self, i: int) -> np.ndarray:
        """Primer followed by continuation i (0-based): [P + C, 88]."""
        return np.concatenate([self.primer, self.rolls[i]])

    def bpm_at(self, frame: int) -> float:
        """The tempo in force at a frame."""
        return [bpm for f, bpm in self.tempo_map if f <= frame][-1]


# --------------------------------------------------------------------------- the grid


def bar_frames(time_signature: tuple[int, int], frames_per_beat: int) -> Fraction:
    """Frames per bar: numerator * 4 / denominator beats (quarter notes) per bar."""
    num, den = time_signature
    return Fraction(num * 4 * frames_per_beat, den)


def bar_line(bar: int, frames_per_bar: Fraction) -> int:
    """The frame where bar number `bar` (from 0) starts: a bar line off the grid rounds up."""
    return math.ceil(bar * frames_per_bar)


def parse_time_signature(value: str | tuple[int, int]) -> tuple[int, int]:
    """'3/4' or (3, 4) -> (3, 4); raises UserError for anything else."""
    text = value if isinstance(value, str) else "/".join(str(v) for v in value)
    try:
        num, den = (int(part) for part in text.split("/"))
    except ValueError:
        num = den = 0
    if not (1 <= num <= 64 and den in (1, 2, 4, 8, 16, 32)):
        raise UserError(f"time signature {text!r}: give it as numerator/denominator, "
                        "e.g. 4/4, 3/4 or 6/8")
    return num, den


# --------------------------------------------------------------------------- Python API


def continue_midi(primer: str | os.PathLike, *, bars: int = 8, variations: int = 4,
                  temperature: float = 1.0, seed: int | None = None,
                  model: str = DEFAULT_MODEL, device: str = "auto",
                  out_dir: str | os.PathLike | None = None, only_continuation: bool = False,
                  plot: bool = False, wav: bool = False,
                  max_primer_bars: int = DEFAULT_MAX_PRIMER_BARS, threads: int = 1,
                  progress: bool = False) -> Continuation:
    """Continue a MIDI clip: `variations` continuations of `bars` bars each.

    The primer is read on the model's grid with its own tempo map, shifted to C, listened
    to (every frame clamped, so the model's state follows it) and then all variations are
    sampled in one batch. With out_dir, writes `<primer>-cont-<i>.mid` (i from 1: primer
    plus continuation, or only the continuation) and, if asked, a .png and a .wav of each;
    out_dir=None writes nothing. Raises UserError for a bad primer or argument, before
    anything is written.
    """
    _check_numbers(bars, variations, temperature)
    if not isinstance(max_primer_bars, int) or max_primer_bars < 1:
        raise UserError(f"max primer bars {max_primer_bars}: give a whole number above 0")
    session, seed = _open_session(model, variations, device, seed, threads, temperature)
    fpb = _model_grid(session, model)
    midi, roll, per_bar, primer_bars = _read_primer(primer, fpb, max_primer_bars)
    primer_frames = len(roll)
    shift = keys.shift_to_c(roll) if session.model.learned_in_c else 0
    tonic, mode, _ = keys.estimate_key(roll)

    n_frames = bar_line(primer_bars + bars, per_bar) - primer_frames
    rolls = _sample(session, keys.transpose(roll, shift), n_frames, progress,
                    desc=Path(primer).name)
    result = Continuation(
        primer=roll, rolls=keys.transpose(rolls, -shift), frames_per_beat=fpb,
        time_signature=midi.time_signature, bar_frames=per_bar, primer_bars=primer_bars,
        bars=bars, tempo_map=[(f, bpm) for f, bpm in midi.tempo_map if f < primer_frames],
        key=keys.key_name(tonic, mode), shift=shift, key_signature=midi.key_signature,
        channel=midi.channel, ticks_per_beat=midi.ticks_per_beat, model=session.model.name,
        provider=session.provider, seed=seed, temperature=float(temperature))
    if out_dir is not None:
        stem = f"{Path(primer).stem}-cont"
        write_all(result, Path(out_dir), stem, only_continuation, plot, wav)
    return result


def generate(*, bars: int = 8, variations: int = 4, temperature: float = 1.0,
             seed: int | None = None, model: str = DEFAULT_MODEL, device: str = "auto",
             out_dir: str | os.PathLike | None = None, name: str = "generated",
             time_signature: tuple[int, int] | str = (4, 4), bpm: float = GENERATE_BPM,
             plot: bool = False, wav: bool = False, threads: int = 1,
             progress: bool = False) -> Continuation:
    """Generate `variations` pieces of `bars` bars from the model's initial state u0, as
    the original tutorial's generate does; in the key the model learned (C for the
    bundled models). With out_dir, writes `<name>-<i>.mid` (i from 1) and, if asked, a
    .png and a .wav of each; out_dir=None writes nothing."""
    _check_numbers(bars, variations, temperature)
    time_signature = parse_time_signature(time_signature)
    if not isinstance(bpm, (int, float)) or not 0 < bpm < 10_000:
        raise UserError(f"bpm {bpm}: give a tempo between 1 and 9999 beats per minute")
    _check_name(name)
    session, seed = _open_session(model, variations, device, seed, threads, temperature)
    fpb = _model_grid(session, model)
    per_bar = bar_frames(time_signature, fpb)
    empty = np.zeros((0, N_KEYS), dtype=np.uint8)
    rolls = _sample(session, empty, bar_line(bars, per_bar), progress, desc=name)
    result = Continuation(
        primer=empty, rolls=rolls, frames_per_beat=fpb,
        time_signature=time_signature, bar_frames=per_bar, primer_bars=0,
        bars=bars, tempo_map=[(0, float(bpm))], key=None, shift=0, key_signature=None,
        channel=0, ticks_per_beat=GENERATE_TICKS_PER_BEAT, model=session.model.name,
        provider=session.provider, seed=seed, temperature=float(temperature))
    if out_dir is not None:
        write_all(result, Path(out_dir), name, False, plot, wav)
    return result


# --------------------------------------------------------------------------- checks


def _check_numbers(bars: int, variations: int, temperature: float) -> None:
    if not isinstance(bars, int) or not 1 <= bars <= MAX_BARS:
        raise UserError(f"bars {bars}: give a whole number of bars from 1 to {MAX_BARS}")
    if not isinstance(variations, int) or not 1 <= variations <= MAX_VARIATIONS:
        raise UserError(f"variations {variations}: give a whole number from 1 to "
                        f"{MAX_VARIATIONS}")
    if not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise UserError(f"temperature {temperature}: give a number above 0 (1 samples "
                        "the model as it learned; lower is tamer, higher wilder)")


def _check_name(name: str) -> None:
    # The name becomes a file name in out_dir; a path in it would write elsewhere.
    if not name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise UserError(f"name {name!r}: give a plain file name stem without a folder, "
                        "e.g. --name sketch")


def _read_primer(primer: str | os.PathLike, frames_per_beat: int, max_bars: int
                 ) -> tuple[MidiRoll, np.ndarray, Fraction, int]:
    """The primer file, its roll padded with silence to its last bar line, the frames per
    bar and its length in bars; UserError for a file that cannot serve as a primer."""
    midi = read_midi(primer, frames_per_beat=frames_per_beat)
    per_bar = bar_frames(midi.time_signature, frames_per_beat)
    n_bars = max(1, math.ceil(Fraction(len(midi.roll)) / per_bar))
    if n_bars > max_bars:
        raise UserError(f"{primer}: the primer is {n_bars} bars long, over the limit of "
                        f"{max_bars}; trim it or raise --max-primer-bars")
    roll = np.zeros((bar_line(n_bars, per_bar), N_KEYS), dtype=np.uint8)
    roll[: len(midi.roll)] = midi.roll
    return midi, roll, per_bar, n_bars


# --------------------------------------------------------------------------- the model


def _open_session(model: str, batch: int, device: str, seed: int | None, threads: int,
                  temperature: float) -> tuple[StepSession, int]:
    """A StepSession for all variations at once, and the seed it runs on: a drawn one when
    none is given, so every run can be repeated."""
    if seed is None:
        seed = secrets.randbelow(2**31)
    session = StepSession(model, batch=batch, device=device, seed=seed, threads=threads,
                          temperature=temperature)
    return session, seed


def _model_grid(session: StepSession, model: str) -> int:
    """The model's frames per beat, after checking it is an 88-key piano model."""
    if session.model.n_visible != N_KEYS or session.model.lowest_pitch != LOWEST_PITCH:
        raise UserError(f"{model}: the model's keys are not the 88 piano keys (midi 21..108) "
                        "that offline generation reads and writes; use a piano model")
    return int(session.model.frames_per_beat)


def _sample(session: StepSession, primer: np.ndarray, n_frames: int, progress: bool,
            desc: str) -> np.ndarray:
    """Listen to primer [P, 88] in every stream, then step n_frames: [B, n_frames, 88]."""
    out = np.zeros((session.batch, n_frames, N_KEYS), dtype=np.uint8)
    # disable=None: a bar on a terminal, nothing in a log or a notebook's captured stderr.
    with tqdm(total=len(primer) + n_frames, unit="frame", desc=desc, leave=False,
              disable=None if progress else True) as bar:
        for frame in primer.astype(np.float32):
            session.listen(frame)
            bar.update()
        for t in range(n_frames):
            out[:, t] = session.step()
            bar.update()
    return out
