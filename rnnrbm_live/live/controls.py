"""Live control from MIDI control changes on the input port (any channel).

Default mapping (each number can be changed on the command line):

    CC 1  (mod wheel)  temperature: 0 -> 0.1 ... 127 -> 2.0 (linear; 64 is about 1.06)
    CC 20              scale lock: 64..127 on, 0..63 off
    CC 21              lock key: 0..11 = C..B major, 12..23 = C..B minor,
                       24..127 = follow the key estimated from what the player played
    CC 22              panic: any value silences every note at once (the engine goes on)
    CC 120, CC 123     (all sound off, all notes off) act as panic too

and on the output, optionally (--state-cc N): the engine's state as CC N on its channel,
0 idle, 1 listening, 2 answering, 3 playing (generate and accompany modes).

`Controls` holds the live values. The input thread writes them and the compute side reads
them once per frame; each is a single attribute, so no lock is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnrbm_live.midi.keys import key_name

TEMPERATURE_MIN = 0.1
TEMPERATURE_MAX = 2.0
PANIC_CCS = (120, 123)  # all sound off, all notes off: a DAW's own panic means ours too
ALL_NOTES_OFF = 123

STATE_IDLE, STATE_LISTENING, STATE_ANSWERING, STATE_PLAYING = 0, 1, 2, 3
STATE_NAMES = {STATE_IDLE: "idle", STATE_LISTENING: "listening",
               STATE_ANSWERING: "answering", STATE_PLAYING: "playing"}


@dataclass(frozen=True)
class CCMap:
    temperature: int = 1
    lock: int = 20
    key: int = 21
    panic: int = 22

    def check(self) -> None:
        """Raise ValueError naming the first number outside 0..127 or used twice."""
        numbers = {"temperature": self.temperature, "lock": self.lock, "key": self.key,
                   "panic": self.panic}
        seen: dict[int, str] = {}
        for what, n in numbers.items():
            if not 0 <= n <= 127:
                raise ValueError(f"--cc-{what} {n} is not a controller number 0..127")
            if n in seen:
                raise ValueError(f"--cc-{what} and --cc-{seen[n]} are both cc {n}; "
                                 "give them different numbers")
            seen[n] = what


def cc_to_temperature(value: int) -> float:
    return TEMPERATURE_MIN + (TEMPERATURE_MAX - TEMPERATURE_MIN) * value / 127.0


def cc_to_key(value: int) -> tuple[int, str] | None:
    """(tonic, mode) for 0..23, None (follow the player) for 24..127."""
    if value < 12:
        return value, "major"
    if value < 24:
        return value - 12, "minor"
    return None


def describe(cc: CCMap, state_cc: int | None = None) -> str:
    """The mapping as printed in --help and at startup."""
    lines = [
        f"  cc {cc.temperature:<3} temperature: 0 -> {TEMPERATURE_MIN}, 127 -> "
        f"{TEMPERATURE_MAX} (linear)",
        f"  cc {cc.lock:<3} scale lock: 64-127 on, 0-63 off",
        f"  cc {cc.key:<3} lock key: 0-11 c..b major, 12-23 c..b minor, 24-127 follow "
        "the player's key",
        f"  cc {cc.panic:<3} panic: silence every note now (also cc 120 and cc 123)",
    ]
    if state_cc is not None:
        lines.append(f"  out cc {state_cc}: state 0 idle, 1 listening, 2 answering, "
                     "3 playing")
    return "\n".join(lines)


class Controls:
    """Live values set by control changes: temperature, scale lock and its key, panic."""

    def __init__(self, cc: CCMap = CCMap(), temperature: float = 1.0):
        self.cc = cc
        self.temperature = float(temperature)
        self.lock = False
        self.lock_key: tuple[int, str] | None = None  # None: follow the player's key
        self.panics = 0  # counts panics; the compute side acts when it changes

    def handle_cc(self, control: int, value: int) -> str | None:
        """Apply one control change; return what it changed, or None if it is not ours."""
        cc = self.cc
        if control == cc.temperature:
            self.temperature = cc_to_temperature(value)
            return "temperature"
        if control == cc.lock:
            self.lock = value >= 64
            return "lock"
        if control == cc.key:
            self.lock_key = cc_to_key(value)
            return "key"
        if control == cc.panic or control in PANIC_CCS:
            self.panics += 1
            return "panic"
        return None

    def summary(self) -> str:
        key = "the player's key" if self.lock_key is None else key_name(*self.lock_key)
        lock = f"on ({key})" if self.lock else "off"
        return f"temperature {self.temperature:.2f}, scale lock {lock}"
