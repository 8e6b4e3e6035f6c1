"""Key estimation and transposition, on hand-written music and on the bundled JSB chorales
(which are all in C major or C minor, so the right answer is known for every piece)."""

from __future__ import annotations

import gzip
import json
from importlib import resources

import numpy as np
import pytest

from rnnrbm_live.midi import keys

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11, 12)
HARMONIC_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11, 12)


def roll_of(frames: list[list[int]]) -> np.ndarray:
    """MIDI note numbers per frame -> [T, 88] uint8."""
    roll = np.zeros((len(frames), keys.N_KEYS), dtype=np.uint8)
    for t, notes in enumerate(frames):
        for note in notes:
            roll[t, note - keys.LOWEST_PITCH] = 1
    return roll


def scale(tonic_note: int, steps: tuple[int, ...]) -> list[list[int]]:
    return [[tonic_note + step] for step in steps]


def cadence(tonic_note: int, minor: bool) -> list[list[int]]:
    """I-IV-V-I (i-iv-V-i in minor, with the raised leading tone), each chord two frames."""
    third = 3 if minor else 4
    tonic = [tonic_note, tonic_note + third, tonic_note + 7]
    subdominant = [tonic_note + 5, tonic_note + 5 + third, tonic_note + 12]
    dominant = [tonic_note + 7, tonic_note + 11, tonic_note + 14]
    return [chord for chord in (tonic, subdominant, dominant, tonic) for _ in range(2)]


def jsb_test_rolls() -> list[np.ndarray]:
    """Read straight from the package data, so this file does not depend on datasets.py."""
    resource = resources.files("rnnrbm_live.bundled").joinpath("data", "jsb_chorales.json.gz")
    with resource.open("rb") as raw, gzip.open(raw, "rt") as text:
        return [roll_of(piece) for piece in json.load(text)["test"]]


@pytest.mark.parametrize("tonic", range(12))
def test_scales_and_cadences_in_every_key(tonic: int) -> None:
    low = 60 + tonic  # C4 .. B4
    assert keys.estimate_key(roll_of(scale(low, MAJOR_SCALE)))[:2] == (tonic, "major")
    assert keys.estimate_key(roll_of(scale(low, HARMONIC_MINOR_SCALE)))[:2] == (tonic, "minor")
    assert keys.estimate_key(roll_of(cadence(low, minor=False)))[:2] == (tonic, "major")
    assert keys.estimate_key(roll_of(cadence(low, minor=True)))[:2] == (tonic, "minor")


def test_short_played_phrase() -> None:
    # Two bars of "Twinkle, twinkle" in D major, one frame per eighth note, over a bass.
    d, a, b, g, fs, e = 62, 69, 71, 67, 66, 64
    melody = [d, d, a, a, b, b, a, a, g, g, fs, fs, e, e, d, d]
    bass = [50] * 8 + [43] * 4 + [45] * 2 + [50] * 2
    tonic, mode, score = keys.estimate_key(roll_of([[m, b_] for m, b_ in zip(melody, bass)]))
    assert (tonic, mode) == (2, "major")
    assert 0.5 < score <= 1.0


def test_silence_has_no_key() -> None:
    assert keys.estimate_key(np.zeros((16, keys.N_KEYS), np.uint8)) == (0, "major", 0.0)


def test_jsb_chorales_are_found_in_c() -> None:
    rolls = jsb_test_rolls()
    rate = np.mean([keys.estimate_key(roll)[0] == 0 for roll in rolls])
    print(f"estimate_key finds tonic C in {rate:.1%} of {len(rolls)} JSB test chorales")
    assert rate >= 0.85  # measured 87.0% with Temperley's profiles (Krumhansl-Kessler: 79%)


def test_transposed_chorales_move_their_tonic() -> None:
    rolls = jsb_test_rolls()
    for shift in range(-6, 6):
        found = [keys.estimate_key(keys.transpose(roll, shift))[0] for roll in rolls]
        rate = np.mean([tonic == shift % 12 for tonic in found])
        assert rate >= 0.85, f"shift {shift}: tonic found in {rate:.1%}"


def test_transpose_shifts_and_drops_out_of_range_notes() -> None:
    roll = roll_of([[21, 60, 108], [64]])
    up = keys.transpose(roll, 3)
    assert up.dtype == roll.dtype and up.shape == roll.shape
    assert np.array_equal(up, roll_of([[24, 63], [67]]))  # C8 + 3 falls off the top
    assert np.array_equal(keys.transpose(roll, -1), roll_of([[59, 107], [63]]))  # A0 - 1 drops
    assert np.array_equal(keys.transpose(roll, 0), roll)
    assert not keys.transpose(roll, 88).any() and not keys.transpose(roll, -100).any()
    assert np.array_equal(keys.transpose(roll[0], 3), up[0])  # a single frame works too


def test_key_names() -> None:
    assert keys.key_name(3, "major") == "Eb major"
    assert keys.key_name(6, "minor") == "F# minor"
    assert keys.key_name(0, "major") == "C major"
    assert keys.key_name(8, "minor") == "G# minor"
    with pytest.raises(ValueError):
        keys.key_name(12, "major")
    with pytest.raises(ValueError):
        keys.key_name(0, "dorian")


def test_semitones_to_c_is_the_nearest_shift() -> None:
    shifts = [keys.semitones_to_c(tonic) for tonic in range(12)]
    assert shifts == [0, -1, -2, -3, -4, -5, -6, 5, 4, 3, 2, 1]
    assert all((tonic + shift) % 12 == 0 for tonic, shift in enumerate(shifts))


def test_shift_to_c_goes_the_way_that_keeps_the_notes() -> None:
    middle = roll_of(scale(55, MAJOR_SCALE) + cadence(55, minor=False))  # G major around G3
    assert keys.shift_to_c(middle) == 5
    high = roll_of(scale(91, MAJOR_SCALE) + [[103, 107]] * 4)  # G major up to B7
    assert keys.estimate_key(high)[:2] == (7, "major")
    assert keys.shift_to_c(high) == -7  # +5 would push B7 past C8
    assert keys.shift_to_c(roll_of(cadence(60, minor=False))) == 0
