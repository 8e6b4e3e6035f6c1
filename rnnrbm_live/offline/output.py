"""Writing a continuation's files: MIDI, and on request a piano-roll PNG and a WAV, staged
beside the output folder and moved in whole, so an error part way leaves it as it was."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.writer import write_midi

VELOCITY = 80            # the model plays on/off only; one moderate velocity for every note


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
        for name in midi_names + plot_names + wav_names:
            os.replace(staging / name, out_dir / name)
    except OSError as e:
        reason = (e.strerror or "i/o error").lower()
        raise UserError(f"{out_dir}: cannot write the output ({reason}); check the "
                        "folder is writable") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.paths = [out_dir / n for n in midi_names]
    result.plots = [out_dir / n for n in plot_names]
    result.wavs = [out_dir / n for n in wav_names]


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


def _written_roll(result, i: int, only_continuation: bool
                  ) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """The roll of variation i as it goes into its file, and that file's tempo map."""
    if only_continuation:
        return result.rolls[i], [(0, result.bpm_at(result.primer_frames - 1))]
    return result.full(i), result.tempo_map


def _write_midis(result, folder: Path, stem: str,
                 only_continuation: bool) -> list[str]:
    names = []
    for i in range(len(result.rolls)):
        name = f"{stem}-{i + 1}.mid"
        roll, tempo_map = _written_roll(result, i, only_continuation)
        write_midi(folder / name, roll, frames_per_beat=result.frames_per_beat,
                   tempo_map=tempo_map, time_signature=result.time_signature,
                   key_signature=result.key_signature, channel=result.channel,
                   velocity=VELOCITY, ticks_per_beat=result.ticks_per_beat)
        names.append(name)
    return names


def _write_plots(result, folder: Path, midi_names: list[str],
                 only_continuation: bool) -> list[str]:
    from rnnrbm_live.offline.plot import plot_roll  # matplotlib only when a plot is asked for

    names = []
    for i, midi_name in enumerate(midi_names):
        name = Path(midi_name).with_suffix(".png").name
        roll, _ = _written_roll(result, i, only_continuation)
        title = (f"{midi_name}: model {result.model}, seed {result.seed}, "
                 f"temperature {result.temperature:g}")
        hint = plot_roll(folder / name, roll,
                         primer_frames=0 if only_continuation else result.primer_frames,
                         bar_frames=result.bar_frames, title=title)
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
