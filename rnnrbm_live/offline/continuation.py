"""Offline generation: continue a MIDI clip (Magenta Studio's "Continue") or generate from
scratch, as Python functions (the `continue` and `generate` subcommands call them).

Grid and length rules (docs/offline.md says the same for users):
- Everything lives on the model's grid: card.frames_per_beat frames per beat (2 for
  nottingham = eighth notes, 1 for jsb_chorales = quarter notes). A bar is
  numerator * 4 / denominator beats of the time signature (the primer's first one;
  4/4 or --time-signature for generate).
- The primer occupies whole bars of its own time signatures (primer.py): it ends at the
  first bar line at or after its last note-off, counted from the start of the file, so the
  continuation starts on a downbeat. When a bar line falls between frames (7/8 on a
  quarter-note grid) the continuation starts at the next frame.
- The continuation is exactly `bars` bars of the time signature in force there: the
  written file ends on its last bar line even when the last frames are silent.
- The primer's file is kept event for event; the continuation goes on a track of its own
  (output.py). Variation i depends on the seed and i alone, not on how many are asked for.

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

import mido
import numpy as np
from tqdm import tqdm

from rnnrbm_live.midi import keys
from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.roll import LOWEST_PITCH, N_KEYS
from rnnrbm_live.model.session import StepSession
from rnnrbm_live.offline.output import check_output, write_all
from rnnrbm_live.offline.primer import DEFAULT_VELOCITY, frame_of, read_primer

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
    bar_ticks: list[Fraction]             # every bar line, primer and continuation
    program: int | None = None            # of the primer's channel, for the continuation
    velocity: int = DEFAULT_VELOCITY      # of every continuation note
    primer_file: mido.MidiFile | None = None  # the user's file, kept as it was
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

    @property
    def end_tick(self) -> int:
        """The continuation's last bar line, where its file ends."""
        return math.ceil(self.bar_ticks[-1])


# --------------------------------------------------------------------------- the grid


def bar_frames(time_signature: tuple[int, int], frames_per_beat: int) -> Fraction:
    """Frames per bar: numerator * 4 / denominator beats (quarter notes) per bar."""
    num, den = time_signature
    return Fraction(num * 4 * frames_per_beat, den)


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
                  progress: bool = False, overwrite: bool = False) -> Continuation:
    """Continue a MIDI clip: `variations` continuations of `bars` bars each.

    The primer is read on the model's grid with its own tempo map, shifted to C, listened
    to (every frame clamped, so the model's state follows it) and then all variations are
    sampled in one batch. With out_dir, writes `<primer>-cont-<i>.mid` (i from 1: primer
    plus continuation, or only the continuation) and, if asked, a .png and a .wav of each;
    out_dir=None writes nothing. A file already there is an error unless overwrite.
    Raises UserError for a bad primer or argument, before anything is written.
    """
    _check_numbers(bars, variations, temperature)
    if not isinstance(max_primer_bars, int) or max_primer_bars < 1:
        raise UserError(f"max primer bars {max_primer_bars}: give a whole number above 0")
    stem = f"{Path(primer).stem}-cont"
    check_output(out_dir, stem, variations, overwrite)
    session, seed = _open_session(model, device, seed, threads, temperature)
    fpb = _model_grid(session, model)
    source = read_primer(primer, fpb, max_primer_bars)
    roll, midi = source.roll, source.midi
    shift = keys.shift_to_c(roll) if session.model.learned_in_c else 0
    tonic, mode, _ = keys.estimate_key(roll)

    tpb = source.file.ticks_per_beat
    bar_ticks = _more_bars(source.bar_ticks, source.time_signature, tpb, bars)
    n_frames = frame_of(bar_ticks[-1], tpb, fpb) - len(roll)
    rolls = _sample(session, seed, keys.transpose(roll, shift), n_frames, variations,
                    progress, desc=Path(primer).name,
                    reopen=_reopen(model, device, seed, threads, temperature))
    result = Continuation(
        primer=roll, rolls=keys.transpose(rolls, -shift), frames_per_beat=fpb,
        time_signature=source.time_signature,
        bar_frames=bar_frames(source.time_signature, fpb), primer_bars=source.bars,
        bars=bars, tempo_map=[(f, bpm) for f, bpm in midi.tempo_map if f < len(roll)],
        key=keys.key_name(tonic, mode), shift=shift, key_signature=midi.key_signature,
        channel=midi.channel, ticks_per_beat=tpb, model=session.model.name,
        provider=session.provider, seed=seed, temperature=float(temperature),
        bar_ticks=bar_ticks, program=source.program, velocity=source.velocity,
        primer_file=source.file)
    if out_dir is not None:
        write_all(result, Path(out_dir), stem, only_continuation, plot, wav)
    return result


def generate(*, bars: int = 8, variations: int = 4, temperature: float = 1.0,
             seed: int | None = None, model: str = DEFAULT_MODEL, device: str = "auto",
             out_dir: str | os.PathLike | None = None, name: str = "generated",
             time_signature: tuple[int, int] | str = (4, 4), bpm: float = GENERATE_BPM,
             plot: bool = False, wav: bool = False, threads: int = 1,
             progress: bool = False, overwrite: bool = False) -> Continuation:
    """Generate `variations` pieces of `bars` bars from the model's initial state u0, as
    the original tutorial's generate does; in the key the model learned (C for the
    bundled models). With out_dir, writes `<name>-<i>.mid` (i from 1) and, if asked, a
    .png and a .wav of each; out_dir=None writes nothing."""
    _check_numbers(bars, variations, temperature)
    time_signature = parse_time_signature(time_signature)
    if not isinstance(bpm, (int, float)) or not 0 < bpm < 10_000:
        raise UserError(f"bpm {bpm}: give a tempo between 1 and 9999 beats per minute")
    _check_name(name)
    check_output(out_dir, name, variations, overwrite)
    session, seed = _open_session(model, device, seed, threads, temperature)
    fpb = _model_grid(session, model)
    bar_ticks = _more_bars([Fraction(0)], time_signature, GENERATE_TICKS_PER_BEAT, bars)
    empty = np.zeros((0, N_KEYS), dtype=np.uint8)
    rolls = _sample(session, seed, empty, frame_of(bar_ticks[-1], GENERATE_TICKS_PER_BEAT,
                                                   fpb), variations, progress, desc=name,
                    reopen=_reopen(model, device, seed, threads, temperature))
    result = Continuation(
        primer=empty, rolls=rolls, frames_per_beat=fpb,
        time_signature=time_signature, bar_frames=bar_frames(time_signature, fpb),
        primer_bars=0, bars=bars, tempo_map=[(0, float(bpm))], key=None, shift=0,
        key_signature=None, channel=0, ticks_per_beat=GENERATE_TICKS_PER_BEAT,
        model=session.model.name, provider=session.provider, seed=seed,
        temperature=float(temperature), bar_ticks=bar_ticks)
    if out_dir is not None:
        write_all(result, Path(out_dir), name, False, plot, wav)
    return result


def _more_bars(bar_ticks: list[Fraction], time_signature: tuple[int, int],
               ticks_per_beat: int, bars: int) -> list[Fraction]:
    """bar_ticks and `bars` more bar lines of time_signature after its last."""
    num, den = time_signature
    length = Fraction(num * 4 * ticks_per_beat, den)
    return bar_ticks + [bar_ticks[-1] + k * length for k in range(1, bars + 1)]


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


# --------------------------------------------------------------------------- the model


def _open_session(model: str, device: str, seed: int | None, threads: int,
                  temperature: float) -> tuple[StepSession, int]:
    """A one-stream StepSession, and the seed it runs on: a drawn one when none is given,
    so every run can be repeated."""
    if seed is None:
        seed = secrets.randbelow(2**31)
    session = StepSession(model, batch=1, device=device, seed=_variation_seed(seed, 0),
                          threads=threads, temperature=temperature)
    return session, seed


def _reopen(model: str, device: str, seed: int, threads: int, temperature: float):
    """A function of i that opens variation i's own session (for GPU sessions)."""
    return lambda i: _open_session(model, device, _variation_seed(seed, i), threads,
                                   temperature)[0]


def _variation_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0] >> 1)


def _model_grid(session: StepSession, model: str) -> int:
    """The model's frames per beat, after checking it is an 88-key piano model."""
    if session.model.n_visible != N_KEYS or session.model.lowest_pitch != LOWEST_PITCH:
        raise UserError(f"{model}: the model's keys are not the 88 piano keys (midi 21..108) "
                        "that offline generation reads and writes; use a piano model")
    return int(session.model.frames_per_beat)


def _sample(session: StepSession, seed: int, primer: np.ndarray, n_frames: int,
            variations: int, progress: bool, desc: str, reopen) -> np.ndarray:
    """Listen to primer [P, 88] once, then sample n_frames per variation: [V, n_frames, 88].

    Every variation starts from the state after the primer with noise seeded by (seed,
    i), so variation i is the same whatever the number of variations. A GPU session's
    noise cannot be rewound; there each variation gets a session of its own."""
    out = np.zeros((variations, n_frames, N_KEYS), dtype=np.uint8)
    # disable=None: a bar on a terminal, nothing in a log or a notebook's captured stderr.
    with tqdm(total=len(primer) + variations * n_frames, unit="frame", desc=desc,
              leave=False, disable=None if progress else True) as bar:
        listened = _listen(session, primer, bar)
        for i in range(variations):
            try:
                session.noise_state = np.random.default_rng(
                    np.random.SeedSequence([seed, i])).bit_generator.state
                session.state = listened
            except UserError:
                if i > 0:
                    session = reopen(i)
                    _listen(session, primer, None)
            for t in range(n_frames):
                out[i, t] = session.step()[0]
                bar.update()
    return out


def _listen(session: StepSession, primer: np.ndarray, bar) -> np.ndarray:
    for frame in primer.astype(np.float32):
        session.listen(frame)
        if bar is not None:
            bar.update()
    return session.state
