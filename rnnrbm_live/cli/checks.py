"""Every number a command line option takes, and its range, in one table shared by live
play and the offline commands; plus the checks of names and output files. A bad value is
one line naming the option, the value and the range (the CLI exits with status 2)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from rnnrbm_live.errors import UserError

SEED_MAX = 2**32 - 1          # numpy's classic seed range; any seed in it repeats a run
# jack keeps 63 characters of a client name, and names rtmidi's second client (the
# input) NAME-01: 60 leaves room for that (alsa keeps 63).
CLIENT_NAME_MAX = 60


def option_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    give: str                  # "give ...": what to type, with the range in it


def _range(low, high, what: str, unit: str = "") -> Range:
    return Range(low, high, f"give {what} from {shown(low)} to {shown(high)}{unit}")


RANGES: dict[str, Range] = {
    # music
    "bpm": _range(20, 400, "a tempo", " bpm"),
    "temperature": Range(0.1, 4.0, "give a temperature from 0.1 to 4 (1 plays the model "
                                   "as it learned; the mod wheel covers 0.1 to 2)"),
    "seed": _range(0, SEED_MAX, "a whole number"),
    "frames_per_beat": _range(1, 24, "frames per beat"),
    "beats_per_bar": _range(1, 32, "beats per bar"),
    "silence_bars": Range(1 / 16, 256, "give a number of bars from 1/16 to 256"),
    "answer_bars": Range(1 / 16, 256, "give a number of bars from 1/16 to 256"),
    "max_answer_bars": Range(1 / 16, 256, "give a number of bars from 1/16 to 256"),
    # midi
    "channel": _range(1, 16, "a midi channel"),
    "latency_ms": _range(-1000, 1000, "an offset", " ms"),
    "cc_temperature": _range(0, 119, "a controller number"),
    "cc_lock": _range(0, 119, "a controller number"),
    "cc_key": _range(0, 119, "a controller number"),
    "cc_panic": _range(0, 119, "a controller number"),
    "state_cc": _range(0, 119, "a controller number"),
    # running
    "threads": _range(1, 256, "a number of threads"),
    "compute_ms": _range(1, 1000, "a time", " ms"),
    "realtime_priority": Range(0, 99, "give a priority from 0 (do not ask) to 99"),
    "stop_after": Range(0.001, math.inf, "give a number of seconds above 0"),
    # offline
    "bars": _range(1, 1024, "a number of bars"),
    "variations": _range(1, 256, "a number of files"),
    "max_primer_bars": _range(1, 4096, "a number of bars"),
}


def check_ranges(args, dests) -> None:
    """Each of `dests` that args holds (None: not given) within its RANGES entry."""
    for dest in dests:
        value = getattr(args, dest, None)
        if value is None:
            continue
        r = RANGES[dest]
        if not r.low <= value <= r.high:  # nan compares false: refused too
            raise UserError(f"{option_name(dest)} {shown(value)}: {r.give}")


def check_client_name(name: str) -> None:
    """A MIDI client name every backend takes: jack and alsa use ':' between client and
    port, and cut long names (jack then refuses to open the client at all)."""
    option = f"--client-name {name!r}"
    if not name.strip():
        raise UserError(f"{option}: give a name, e.g. --client-name rnnrbm-live")
    if len(name) > CLIENT_NAME_MAX:
        raise UserError(f"{option[:40]}...: {len(name)} characters; give at most "
                        f"{CLIENT_NAME_MAX}")
    if ":" in name or not name.isprintable():
        raise UserError(f"{option}: ':' and control characters are not allowed (jack and "
                        "alsa write client:port); give a plain name such as rnnrbm-2")


def check_output_file(option: str, path: str, example: str) -> None:
    """A file the run writes at its end: its folder must exist and be writable now, not
    only when the run is over."""
    full = os.path.abspath(path)
    folder = os.path.dirname(full)
    if os.path.isdir(full):
        raise UserError(f"{option} {path}: is a folder; give a file name such as {example}")
    if not os.path.isdir(folder):
        raise UserError(f"{option} {path}: the folder {folder} does not exist; create it "
                        "or write elsewhere")
    if not os.access(folder, os.W_OK) or (os.path.exists(full)
                                          and not os.access(full, os.W_OK)):
        raise UserError(f"{option} {path}: cannot write there; choose a writable place")
