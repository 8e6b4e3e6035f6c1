"""Key estimation and transposition of 88-key piano rolls.

The bundled datasets are all transposed to C major / C minor (as in Boulanger-Lewandowski
et al., 2012), so a model trained on them expects music in C. The live engine estimates the
key of a player's phrase, transposes it to C, and transposes the model's answer back;
`load_split(transpose_to_c=True)` does the same to a folder of MIDI files.

The estimate is the Krumhansl-Schmuckler algorithm: the duration-weighted pitch-class
histogram is correlated with a key profile for each of the 24 keys and the best one wins.
It needs no training data and behaves sensibly on a few bars.
"""

from __future__ import annotations

import numpy as np

N_KEYS = 88
LOWEST_PITCH = 21  # A0, the lowest key of the roll

MODES = ("major", "minor")

# Temperley's (1999, "What's key for key?") profiles, counted from the Kostka-Payne
# textbook excerpts; index 0 = the tonic. They are used rather than Krumhansl & Kessler's
# probe-tone ratings because on the bundled pieces (all known to be in C) they find the
# tonic far more often: JSB 88% vs 80%, Nottingham 98% vs 89%, MuseData 95% vs 78%,
# Piano-midi 95% vs 81% of pieces; KK mostly mistakes a piece for its dominant key.
_MAJOR_PROFILE = np.array(
    [0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400]
)
_MINOR_PROFILE = np.array(
    [0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330]
)

# Spelling follows the usual key signatures (Eb major rather than D# major, F# minor
# rather than Gb minor) so that names match what a musician reads on a score.
_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


def _standardize(rows: np.ndarray) -> np.ndarray:
    """Zero mean, unit norm along the last axis, so a dot product is a Pearson correlation."""
    centred = rows - rows.mean(axis=-1, keepdims=True)
    return centred / np.linalg.norm(centred, axis=-1, keepdims=True)


def _key_templates() -> np.ndarray:
    """[24, 12] standardized profiles: rows 0..11 major keys on C..B, 12..23 minor keys."""
    profiles = (_MAJOR_PROFILE, _MINOR_PROFILE)
    rows = [np.roll(profile, tonic) for profile in profiles for tonic in range(12)]
    return _standardize(np.array(rows))


_TEMPLATES = _key_templates()


def pitch_class_histogram(roll: np.ndarray) -> np.ndarray:
    """Frames each pitch class sounds, summed over the roll: [12], index 0 = C.

    Accepts a [T, 88] roll or a single [88] frame; any non-zero value counts as a sounding
    note, so velocity rolls work too.
    """
    roll = np.asarray(roll)
    if roll.shape[-1] != N_KEYS or roll.ndim not in (1, 2):
        raise ValueError(f"expected a [T, {N_KEYS}] piano roll, got shape {roll.shape}")
    per_key = (roll.reshape(-1, N_KEYS) != 0).sum(axis=0)
    pitch_classes = (np.arange(N_KEYS) + LOWEST_PITCH) % 12
    return np.bincount(pitch_classes, weights=per_key, minlength=12)


def estimate_key(roll: np.ndarray) -> tuple[int, str, float]:
    """(tonic pitch class with C=0, "major" | "minor", correlation in -1..1) of a roll.

    A roll with no notes, or with every pitch class equally often, has no key: it is
    reported as C major with score 0.0 so callers leave it untransposed.
    """
    histogram = pitch_class_histogram(roll)
    centred = histogram - histogram.mean()
    if not np.any(centred):
        return 0, "major", 0.0
    scores = _TEMPLATES @ (centred / np.linalg.norm(centred))
    best = int(np.argmax(scores))
    return best % 12, MODES[best // 12], float(scores[best])


def transpose(roll: np.ndarray, semitones: int) -> np.ndarray:
    """The roll shifted up by `semitones` (down if negative); notes pushed past A0 or C8
    are dropped rather than wrapped, since wrapping would move them by octaves."""
    roll = np.asarray(roll)
    if roll.shape[-1] != N_KEYS:
        raise ValueError(f"expected a [T, {N_KEYS}] piano roll, got shape {roll.shape}")
    semitones = int(semitones)
    out = np.zeros_like(roll)
    if abs(semitones) >= N_KEYS:
        return out
    if semitones >= 0:
        out[..., semitones:] = roll[..., : N_KEYS - semitones]
    else:
        out[..., :semitones] = roll[..., -semitones:]
    return out


def _check_tonic(tonic: int) -> int:
    if int(tonic) != tonic or not 0 <= tonic < 12:
        raise ValueError(f"tonic must be a pitch class 0..11, got {tonic!r}")
    return int(tonic)


def key_name(tonic: int, mode: str) -> str:
    """A readable key name such as "Eb major" or "F# minor"."""
    tonic = _check_tonic(tonic)
    if mode not in MODES:
        raise ValueError(f"mode must be 'major' or 'minor', got {mode!r}")
    names = _MAJOR_NAMES if mode == "major" else _MINOR_NAMES
    return f"{names[tonic]} {mode}"


def semitones_to_c(tonic: int) -> int:
    """The shift in -6..+5 that moves `tonic` onto C: the nearest one, so the music moves
    by at most a tritone and stays as far from the edges of the keyboard as possible."""
    shift = -_check_tonic(tonic) % 12
    return shift - 12 if shift > 5 else shift


def _notes_kept(roll: np.ndarray, semitones: int) -> int:
    """How many note-frames of the roll stay on the keyboard after `transpose(roll, semitones)`."""
    per_key = (np.asarray(roll).reshape(-1, N_KEYS) != 0).sum(axis=0)
    return int(per_key[max(0, -semitones) : N_KEYS - max(0, semitones)].sum())


def shift_to_c(roll: np.ndarray) -> int:
    """Semitones that move the roll's estimated tonic onto C (major -> C major, minor -> C
    minor): up or down, whichever keeps more notes on the keyboard, the nearer on a tie.

    Usually that is `semitones_to_c` (-6..+5); the octave-other way (-11..+11) wins only
    for music crowded against one end of the keyboard.
    """
    tonic, _, _ = estimate_key(roll)
    near = semitones_to_c(tonic)
    if near == 0:
        return 0
    far = near - 12 if near > 0 else near + 12
    return far if _notes_kept(roll, far) > _notes_kept(roll, near) else near
