"""Writing a continuation's files: MIDI, and on request a piano-roll PNG and a WAV, staged
beside the output folder and moved in whole, so an error or a Ctrl+C part way leaves it
as it was.

The user's clip is kept: a `continue` file is the primer file, every event as it was,
plus one track holding the continuation (a format 0 primer becomes format 1, its one
track first). Nothing is overwritten silently: a file already there is an error naming
it unless overwrite, and then the .png and .wav of an earlier run that this run does
not write again are removed with it, so none stays beside a MIDI file it no longer
matches.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import mido
import numpy as np

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.writer import note_track, save_midi, tick_of

COMPANIONS = (".mid", ".png", ".wav")  # the files of one variation


def check_output(out_dir, stem: str, variations: int, overwrite: bool) -> None:
    """Before any work: out_dir must be a folder (or not yet exist), and none of the
    files this run would write may exist unless overwrite."""
    if out_dir is None:
        return
    out_dir = Path(out_dir)
    for folder in (out_dir, *out_dir.parents):
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder}: is a file, not a folder; give a folder with -o")
        if folder.exists():
            break
    if overwrite:
        return
    for i in range(variations):
        for suffix in COMPANIONS:
            path = out_dir / f"{stem}-{i + 1}{suffix}"
            if path.exists():
                raise UserError(f"{path}: already exists; pass --overwrite to replace it "
                                "(with its .mid, .png and .wav), or give another folder "
                                "with -o")


def write_all(result, out_dir: Path, stem: str, only_continuation: bool,
              plot: bool, wav: bool) -> None:
    """Write every file into a staging folder beside out_dir, then move them in: an error
    part way leaves out_dir as it was."""
    staging = _staging_dir(out_dir)
    try:
        midi_names = _write_midis(result, staging, stem, only_continuation)
        plot_names = _write_plots(result, staging, midi_names, only_continuation) \
            if plot else []
        wav_names = _write_wavs(staging, midi_names) if wav else []
        out_dir.mkdir(parents=True, exist_ok=True)
        with _interrupts_wait():
            _move_in(staging, out_dir, midi_names, plot_names + wav_names)
    except OSError as e:
        reason = (e.strerror or "i/o error").lower()
        raise UserError(f"{out_dir}: cannot write the output ({reason}); check the "
                        "folder is writable") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.paths = [out_dir / n for n in midi_names]
    result.plots = [out_dir / n for n in plot_names]
    result.wavs = [out_dir / n for n in wav_names]


def _move_in(staging: Path, out_dir: Path, midi_names: list[str],
             others: list[str]) -> None:
    """Move the staged files in; an earlier run's .png or .wav of the same name that was
    not written again goes, so nothing stale stays beside a new MIDI file."""
    for midi_name in midi_names:
        for suffix in COMPANIONS[1:]:
            name = Path(midi_name).with_suffix(suffix).name
            if name not in others:
                (out_dir / name).unlink(missing_ok=True)
    for name in midi_names + others:
        os.replace(staging / name, out_dir / name)


@contextmanager
def _interrupts_wait():
    """Hold a Ctrl+C until the block ends, so the moves are never left half done; the
    command then finishes, its files all in place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _staging_dir(out_dir: Path) -> Path:
    """A fresh hidden folder beside out_dir (same file system, so moves are atomic); inside
    out_dir only when its parent is not writable."""
    out_dir = out_dir.absolute()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-rnnrbm-",
                                     dir=out_dir.parent))
    except OSError:
        pass
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".rnnrbm-", dir=out_dir))
    except OSError as e:
        reason = (e.strerror or "i/o error").lower()
        raise UserError(f"{out_dir}: cannot create the output folder ({reason}); give a "
                        "writable folder with -o") from None


# ------------------------------------------------------------------------ the MIDI files


def take_file(result, i: int, only_continuation: bool) -> mido.MidiFile:
    """Variation i's file: the primer's tracks as they were and the continuation's own
    track; or, for generate and only_continuation, a conductor track and that track."""
    fpb, tpb = result.frames_per_beat, result.ticks_per_beat
    first = result.primer_frames
    boundaries = tick_of(np.arange(first, first + result.rolls.shape[1] + 1), tpb, fpb)
    end = result.end_tick
    if only_continuation:
        boundaries, end = boundaries - boundaries[0], end - int(boundaries[0])
    what = "generated" if result.primer_file is None else "continuation"
    track = note_track(result.rolls[i], boundaries, channel=result.channel,
                       velocity=result.velocity, program=result.program, end_tick=end,
                       name=f"{what} {i + 1} ({result.model}, seed {result.seed})")
    if result.primer_file is not None and not only_continuation:
        tracks = list(result.primer_file.tracks)
    else:
        tracks = [_conductor(result)]
    midi = mido.MidiFile(type=1, ticks_per_beat=tpb)
    midi.tracks.extend(tracks + [track])
    return midi


def _conductor(result) -> mido.MidiTrack:
    """Tempo, time signature and key in force where the continuation starts."""
    num, den = result.time_signature
    bpm = result.bpm_at(max(result.primer_frames - 1, 0))
    track = mido.MidiTrack([
        mido.MetaMessage("time_signature", numerator=num, denominator=den),
        mido.MetaMessage("set_tempo", tempo=round(60e6 / bpm))])
    if result.key_signature is not None:
        track.append(mido.MetaMessage("key_signature", key=result.key_signature))
    return track


def _write_midis(result, folder: Path, stem: str,
                 only_continuation: bool) -> list[str]:
    names = []
    for i in range(len(result.rolls)):
        name = f"{stem}-{i + 1}.mid"
        save_midi(folder / name, take_file(result, i, only_continuation))
        names.append(name)
    return names


def written_roll(result, i: int, only_continuation: bool) -> np.ndarray:
    """The roll of variation i as its file plays it on the model's grid."""
    return result.rolls[i] if only_continuation else result.full(i)


def _write_plots(result, folder: Path, midi_names: list[str],
                 only_continuation: bool) -> list[str]:
    from rnnrbm_live.offline.plot import plot_roll  # matplotlib only when a plot is asked for

    names = []
    shown = result.bar_ticks[result.primer_bars:] if only_continuation \
        else result.bar_ticks
    bar_frames = [float((t - shown[0]) * result.frames_per_beat / result.ticks_per_beat)
                  for t in shown]  # where each bar line falls, in frames of the roll
    for i, midi_name in enumerate(midi_names):
        name = Path(midi_name).with_suffix(".png").name
        hint = plot_roll(
            folder / name, written_roll(result, i, only_continuation),
            primer_frames=0 if only_continuation else result.primer_frames,
            bar_frames=bar_frames, generated=result.primer_file is None,
            title=midi_name, subtitle=f"model {result.model}, seed {result.seed}, "
                                      f"temperature {result.temperature:g}")
        if hint:
            note(hint)
            return []
        names.append(name)
    return names


def _write_wavs(folder: Path, midi_names: list[str]) -> list[str]:
    from rnnrbm_live.offline.render import renderer

    synth = renderer()
    if isinstance(synth, str):
        note(synth)
        return []
    names = []
    for midi_name in midi_names:
        name = Path(midi_name).with_suffix(".wav").name
        problem = synth.render(folder / midi_name, folder / name)
        if problem:
            note(problem)
            continue
        names.append(name)
    return names


def note(line: str) -> None:
    """A one-line remark for the user (a missing extra, a failed render); not an error."""
    print(f"rnnrbm-live: {line}", file=sys.stderr)
