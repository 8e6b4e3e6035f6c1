"""The primer of `continue`: the user's file kept event for event (mido), its roll on the
model's grid (read_midi's rules), and where its bars fall, from its own time signatures.

Bars are counted from the start of the file, as a DAW counts them: a time signature
holds from its tick on, and one that falls inside a bar starts a new bar there. The
primer ends at the first bar line at or after its last note-off (any channel, drums
too), so a last note that ends exactly on a bar line ends the primer there.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from fractions import Fraction

import mido
import numpy as np

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.reader import roll_from_bytes
from rnnrbm_live.midi.roll import N_KEYS, MidiRoll
from rnnrbm_live.midi.scanner import read_bytes

DEFAULT_VELOCITY = 80  # for a continuation whose primer channel has no note-ons


@dataclass
class Primer:
    """A primer file as the continuation needs it."""

    file: mido.MidiFile                   # every event of the user's file, untouched
    midi: MidiRoll                        # read on the model's grid
    roll: np.ndarray                      # [P, 88]: the roll up to its last bar line
    bar_ticks: list[Fraction]             # bar lines from 0 to the primer's last, in ticks
    time_signature: tuple[int, int]       # in force at the primer's last bar line
    program: int | None                   # on the continuation's channel, at its start
    velocity: int                         # the median note-on velocity of that channel

    @property
    def bars(self) -> int:
        return len(self.bar_ticks) - 1


def read_primer(path: str | os.PathLike, frames_per_beat: int, max_bars: int) -> Primer:
    """Read the primer once (bytes), then as a roll and as mido events; UserError for a
    file that cannot serve as a primer."""
    name = str(path)
    data = read_bytes(name, path)
    midi = roll_from_bytes(name, data, frames_per_beat=frames_per_beat)
    try:
        file = mido.MidiFile(file=io.BytesIO(data))
    except (OSError, ValueError, EOFError, KeyError, IndexError) as e:
        raise UserError(f"{name}: mido cannot read this file ({str(e).lower()}); "
                        "re-save it from your editor") from None
    signatures = _time_signatures(file)
    bar_ticks = bar_lines(signatures, file.ticks_per_beat, midi.last_tick)
    if len(bar_ticks) - 1 > max_bars:
        raise UserError(f"{name}: the primer is {len(bar_ticks) - 1} bars long, over the "
                        f"limit of {max_bars}; trim it or raise --max-primer-bars")
    start = frame_of(bar_ticks[-1], file.ticks_per_beat, frames_per_beat)
    roll = np.zeros((start, N_KEYS), dtype=np.uint8)
    roll[: min(start, len(midi.roll))] = midi.roll[:start]
    program, velocity = _channel_facts(file, midi.channel, int(bar_ticks[-1]))
    return Primer(file=file, midi=midi, roll=roll, bar_ticks=bar_ticks,
                  time_signature=signature_at(signatures, bar_ticks[-1]),
                  program=program, velocity=velocity)


def frame_of(tick: Fraction | int, ticks_per_beat: int, frames_per_beat: int) -> int:
    """The first frame that starts at or after tick: a bar line off the grid rounds up."""
    return math.ceil(Fraction(tick) * frames_per_beat / ticks_per_beat)


def bar_lines(signatures: list[tuple[int, int, int]], ticks_per_beat: int,
              until: int) -> list[Fraction]:
    """Bar lines in ticks from 0 to the first at or after `until` (at least one bar).

    signatures: (tick, numerator, denominator), sorted; 4/4 before the first."""
    if not signatures or signatures[0][0] > 0:
        signatures = [(0, 4, 4)] + signatures
    lines, k = [Fraction(0)], 0
    while lines[-1] < until or len(lines) < 2:
        at = lines[-1]
        while k + 1 < len(signatures) and signatures[k + 1][0] <= at:
            k += 1
        _, num, den = signatures[k]
        nxt = at + Fraction(num * 4 * ticks_per_beat, den)
        if k + 1 < len(signatures):
            nxt = min(nxt, Fraction(signatures[k + 1][0]))
        lines.append(nxt)
    return lines


def signature_at(signatures: list[tuple[int, int, int]], tick: Fraction) -> tuple[int, int]:
    in_force = [(num, den) for t, num, den in signatures if t <= tick]
    return in_force[-1] if in_force else (4, 4)


def _time_signatures(file: mido.MidiFile) -> list[tuple[int, int, int]]:
    found = []
    for track in file.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "time_signature":
                found.append((now, msg.numerator, msg.denominator))
    return sorted(found, key=lambda s: s[0])  # stable: a later track wins at one tick


def _channel_facts(file: mido.MidiFile, channel: int, before: int
                   ) -> tuple[int | None, int]:
    """The program in force on channel at tick `before`, and its median velocity."""
    programs: list[tuple[int, int]] = []
    velocities: list[int] = []
    for track in file.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if getattr(msg, "channel", None) != channel:
                continue
            if msg.type == "program_change" and now <= before:
                programs.append((now, msg.program))
            elif msg.type == "note_on" and msg.velocity:
                velocities.append(msg.velocity)
    programs.sort(key=lambda p: p[0])  # stable: at one tick the later event wins
    program = programs[-1][1] if programs else None
    velocity = int(np.median(velocities)) if velocities else DEFAULT_VELOCITY
    return program, velocity
