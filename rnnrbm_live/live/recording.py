"""`--record`: what was played, both sides, as a MIDI file.

Both sides are logged compactly while playing (`MessageLog`: 8 bytes of time and the
message's 3 bytes, not a mido object each: a 10,000 notes/s flood costs about 7 MB a
minute, where message objects took over 100 MB in 30 s), up to MAX_MESSAGES a side; past
that a side records nothing more and the end of the run says so. At exit the file is
written straight from those bytes (no message objects), so a long take writes quickly.
"""

from __future__ import annotations

import struct
from array import array

import mido
import numpy as np

MAX_MESSAGES = 4_000_000   # a side: about 44 MB, over six minutes of a 10k notes/s flood
_RECORDED = ("note_on", "note_off", "control_change")


class MessageLog:
    """Timestamped 3-byte channel messages (notes, control changes), appended by one
    thread; transport and clock messages are not recorded."""

    def __init__(self, limit: int = MAX_MESSAGES):
        self.limit = limit
        self.times = array("d")
        self.data = bytearray()
        self.dropped = 0

    def append(self, t: float, msg: mido.Message) -> None:
        if msg.type not in _RECORDED:
            return
        if len(self.times) >= self.limit:
            self.dropped += 1
            return
        self.data += bytes(msg.bytes())
        self.times.append(t)

    def __len__(self) -> int:
        return len(self.times)

    def messages(self) -> list[tuple[float, mido.Message]]:
        """As (time, mido message) pairs (for tests and short logs)."""
        return [(self.times[i], mido.Message.from_bytes(self.data[3 * i:3 * i + 3]))
                for i in range(len(self.times))]


def record_seconds_per_tick(bpm: float, ticks_per_beat: int) -> float:
    return 60.0 / bpm / ticks_per_beat


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">I", len(body)) + body


def _meta(kind: int, data: bytes) -> bytes:
    return b"\x00\xff" + bytes([kind]) + _varlen(len(data)) + data


def _event_track(name: str, log: MessageLog, t0: float, spt: float) -> bytes:
    body = bytearray(_meta(0x03, name.encode()))
    times = np.frombuffer(log.times, dtype=np.float64) if len(log) else np.zeros(0)
    ticks = np.maximum(0, np.floor((times - t0) / spt + 0.5)).astype(np.int64)
    order = np.argsort(ticks, kind="stable")
    data = log.data
    last = 0
    for i in order.tolist():
        tick = int(ticks[i])
        body += _varlen(tick - last)
        body += data[3 * i:3 * i + 3]
        last = tick
    body += b"\x00\xff\x2f\x00"
    return _chunk(b"MTrk", bytes(body))


def write_recording(path, engine, bpm: float, ticks_per_beat: int = 480) -> None:
    """Write what was played, both sides, to a format 1 MIDI file: track 1 the player's
    input, track 2 what rnnrbm-live sent, times from the engine's frame 0."""
    t0 = engine.t0 if engine.t0 is not None else 0.0
    spt = record_seconds_per_tick(bpm, ticks_per_beat)
    tempo = mido.bpm2tempo(bpm)
    meta = (_meta(0x51, tempo.to_bytes(3, "big"))
            + _meta(0x58, bytes([engine.config.beats_per_bar, 2, 24, 8])) + b"\x00\xff\x2f\x00")
    sides = (("player", engine.player_log or MessageLog()),
             ("rnnrbm-live", engine.sender.log or MessageLog()))
    with open(path, "wb") as f:
        f.write(_chunk(b"MThd", struct.pack(">HHH", 1, 1 + len(sides), ticks_per_beat)))
        f.write(_chunk(b"MTrk", meta))
        for name, log in sides:
            f.write(_event_track(name, log, t0, spt))


def dropped_messages(engine) -> int:
    """Messages not recorded because a side's log was full."""
    return sum(log.dropped for log in (engine.player_log, engine.sender.log)
               if log is not None)
