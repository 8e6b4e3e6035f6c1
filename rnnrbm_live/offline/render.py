"""Render a MIDI file to a .wav with fluidsynth and a General MIDI soundfont.

fluidsynth is an external program, not a Python dependency: when it or a soundfont is
missing, `renderer()` says what to install in one line and the caller carries on without
audio (the MIDI files are the product; the wav is a convenience for listening).

fluidsynth renders at its default gain, which leaves a sparse piano part at 5-10% of
full scale; every file is then peak-normalised to -1 dBFS (one gain for the whole file,
so the dynamics inside it stay as they were).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 44100
PEAK = 10 ** (-1 / 20)  # -1 dBFS: near full scale, with room for a lossy encoder
SOUNDFONT_ENV = "RNNRBM_SOUNDFONT"
# Where distributions and Homebrew put soundfonts; the first folder that holds one wins.
SOUNDFONT_DIRS = (
    "/usr/share/sounds/sf2",
    "/usr/share/soundfonts",
    "/usr/share/sounds/sf3",
    "/usr/local/share/soundfonts",
    "/opt/homebrew/share/soundfonts",
    "/opt/homebrew/share/fluid-synth",
    "~/.local/share/soundfonts",
)
# Names of full General MIDI banks, best first: a GM bank maps program 0 to a piano,
# which is what a piano roll should sound like.
_PREFERRED = ("FluidR3_GM.sf2", "default-GM.sf2", "default-GM.sf3", "FluidR3_GM.sf3",
              "GeneralUser GS.sf2", "TimGM6mb.sf2")
_RENDER_TIMEOUT_S = 300  # a stuck synthesizer must not hang a batch job forever


@dataclass(frozen=True)
class Renderer:
    """A fluidsynth binary and the soundfont it plays with."""

    fluidsynth: str
    soundfont: Path

    def render(self, midi_path: Path, wav_path: Path) -> str | None:
        """Write wav_path from midi_path; return None, or one line saying why it failed."""
        cmd = [self.fluidsynth, "-ni", "-F", str(wav_path), "-r", str(SAMPLE_RATE),
               str(self.soundfont), str(midi_path)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=_RENDER_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{wav_path.name}: fluidsynth did not run ({e}); the midi file is kept"
        if done.returncode != 0 or not wav_path.is_file():
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return (f"{wav_path.name}: fluidsynth failed (exit {done.returncode}: "
                    f"{last[0].lower()}); the midi file is kept")
        normalise(wav_path)
        return None


def normalise(wav_path: Path, peak: float = PEAK) -> None:
    """Scale a 16-bit PCM wav so its loudest sample is `peak` of full scale."""
    with wave.open(str(wav_path), "rb") as f:
        params = f.getparams()
        data = f.readframes(params.nframes)
    if params.sampwidth != 2:
        return  # fluidsynth writes 16-bit unless told otherwise; leave others as they are
    samples = np.frombuffer(data, dtype="<i2").astype(np.float64)
    loudest = np.abs(samples).max(initial=0.0)
    if loudest == 0:
        return  # silence stays silence
    scaled = np.clip(np.round(samples * (peak * 32767 / loudest)), -32768, 32767)
    with wave.open(str(wav_path), "wb") as f:
        f.setparams(params)
        f.writeframes(scaled.astype("<i2").tobytes())


def install_hint() -> str:
    """The one line that says how to get fluidsynth and a GM soundfont on this system."""
    if sys.platform == "darwin":
        return ("--wav needs fluidsynth and a general midi soundfont: brew install "
                f"fluid-synth, then set {SOUNDFONT_ENV}=/path/to/soundfont.sf2")
    return ("--wav needs fluidsynth and a general midi soundfont: apt install fluidsynth "
            f"fluid-soundfont-gm (or set {SOUNDFONT_ENV}=/path/to/soundfont.sf2)")


def find_soundfont() -> Path | None:
    """RNNRBM_SOUNDFONT if set, else the best GM soundfont in the usual folders."""
    override = os.environ.get(SOUNDFONT_ENV)
    if override:
        path = Path(override).expanduser()
        return path if path.is_file() else None
    for folder in (Path(d).expanduser() for d in SOUNDFONT_DIRS):
        if not folder.is_dir():
            continue
        for name in _PREFERRED:
            if (folder / name).is_file():  # is_file follows the alternatives symlink
                return folder / name
        found = sorted(p for p in folder.glob("*.sf[23]") if p.is_file())
        if found:
            return found[0]
    return None


def renderer() -> Renderer | str:
    """A ready Renderer, or one line saying what is missing and how to install it."""
    binary = shutil.which("fluidsynth")
    if binary is None:
        return install_hint()
    soundfont = find_soundfont()
    if soundfont is None:
        override = os.environ.get(SOUNDFONT_ENV)
        if override:
            return (f"{override}: soundfont not found ({SOUNDFONT_ENV}); point it at an "
                    ".sf2 file, or unset it to use an installed one")
        return install_hint()
    return Renderer(binary, soundfont)
