"""`--record`: what was played, both sides, as a MIDI file."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import mido

if TYPE_CHECKING:
    from rnnrbm_live.live.engine import Engine


def record_seconds_per_tick(bpm: float, ticks_per_beat: int) -> float:
    return 60.0 / bpm / ticks_per_beat


def write_recording(path, engine: Engine, bpm: float, ticks_per_beat: int = 480) -> None:
    """Write what was played, both sides, to a format 1 MIDI file: track 1 the player's
    input, track 2 what rnnrbm-live sent, times from the engine's frame 0."""
    t0 = engine.t0 if engine.t0 is not None else 0.0
    spt = record_seconds_per_tick(bpm, ticks_per_beat)
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    meta.append(mido.MetaMessage("time_signature",
                                 numerator=engine.config.beats_per_bar, denominator=4,
                                 time=0))
    meta.append(mido.MetaMessage("end_of_track", time=0))
    midi.tracks.append(meta)
    sides = (("player", engine.player_log or []),
             ("rnnrbm-live", engine.sender.log or []))
    for name, log in sides:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        last = 0
        for t, msg in sorted(log, key=lambda e: e[0]):
            if msg.type in ("clock", "start", "stop", "continue", "songpos"):
                continue
            tick = max(0, int(math.floor((t - t0) / spt + 0.5)))
            track.append(msg.copy(time=max(0, tick - last)))
            last = max(last, tick)
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(track)
    midi.save(path)
