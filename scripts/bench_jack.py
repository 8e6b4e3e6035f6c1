"""JACK clients for the live benchmark (bench_live.py), and the analysis of what they saw:
a dummy-backend server, a receiver that stamps every event with its sample frame, a
sender that writes events at exact frames, and jack_midi_clock driven by jack_transport
as a MIDI clock master."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

JACK_ENV = {"JACK_NO_AUDIO_RESERVATION": "1", "JACK_NO_START_SERVER": "1"}


# ----------------------------------------------------------------------------- jack


def jack_answers() -> bool:
    try:
        return subprocess.run(["timeout", "5", "jack_lsp"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_jack(period: int) -> subprocess.Popen | None:
    """None if a server already answers; else a jackd with the dummy backend."""
    os.environ.update(JACK_ENV)
    if jack_answers():
        return None
    if not shutil.which("jackd"):
        sys.exit("bench_live: jackd is not installed (apt-get install jackd2 jack-tools)")
    cmd = ["jackd", "-S", "-R", "-P", "70", "--port-max", "128"]
    if os.environ.get("JACK_DEFAULT_SERVER"):
        cmd += ["-n", os.environ["JACK_DEFAULT_SERVER"]]
    cmd += ["-d", "dummy", "-r", "48000", "-p", str(period)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    for _ in range(200):    # up to 20 s: a loaded machine answers slowly
        if proc.poll() is not None:
            sys.exit(f"bench_live: jackd exited ({proc.returncode}); is a server named "
                     f"{os.environ.get('JACK_DEFAULT_SERVER', 'default')} stopping?")
        if jack_answers():
            return proc
        time.sleep(0.1)
    proc.kill()
    sys.exit("bench_live: jackd did not start")


def stop_process(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Receiver:
    """Records every event's frame (last_frame_time + offset), and for every process cycle
    (last_frame_time, perf_counter at the callback): the lower envelope of
    perf_counter - frames / rate over a few hundred cycles is when each cycle began on the
    engine's own clock, so event frames map to the engine's time without trusting the
    dummy backend's clock (it drifts and jumps at its xruns)."""

    def __init__(self, name: str):
        import jack
        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.midi_inports.register("in")
        self.events: list[tuple[int, int, bytes]] = []   # (frame, cycle frame, data)
        self.cycles: list[tuple[int, float]] = []         # (cycle frame, perf_counter)
        self.lock = threading.Lock()
        self.xruns = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()
        self.rate = self.client.samplerate
        self.period = self.client.blocksize

    def _xrun(self, delayed_usecs):
        self.xruns += 1

    def raw(self) -> list[tuple[int, bytes]]:
        """Every event as (frame, bytes), in the order it came."""
        with self.lock:
            return [(frame, d) for frame, _, d in self.events]

    def _process(self, frames):
        now = time.perf_counter()
        base = self.client.last_frame_time
        self.cycles.append((base, now))
        got = [(base + off, base, bytes(d)) for off, d in self.port.incoming_midi_events()]
        if got:
            with self.lock:
                self.events.extend(got)

    def cycle_start_times(self, cycle_frames: np.ndarray, window_s: float = 0.1) -> np.ndarray:
        """Engine-clock time at which each of these cycles began (see the class doc)."""
        cycles = np.array(list(self.cycles), dtype=np.float64)
        frames, perf = cycles[:, 0], cycles[:, 1]
        offset = perf - frames / self.rate
        w = max(1, int(window_s * self.rate / self.period))
        idx = np.searchsorted(frames, cycle_frames)
        out = np.empty(len(cycle_frames))
        for j, i in enumerate(idx):
            out[j] = offset[max(0, i - w):i + w + 1].min() + cycle_frames[j] / self.rate
        return out

    def notes(self) -> list[tuple[int, str, int]]:
        with self.lock:
            events = list(self.events)
        out = []
        for frame, _, d in events:
            if d[0] & 0xF0 == 0x90 and d[2] > 0:
                out.append((frame, "on", d[1]))
            elif d[0] & 0xF0 in (0x80, 0x90):
                out.append((frame, "off", d[1]))
        return out

    def timed_notes(self) -> list[tuple[int, float, str, int]]:
        """(frame, engine-clock time delivered, 'on'|'off', note)."""
        with self.lock:
            events = list(self.events)
        if not events:
            return []
        starts = self.cycle_start_times(np.array([c for _, c, _ in events], dtype=float))
        out = []
        for (frame, cycle, d), start in zip(events, starts):
            t = start + (frame - cycle) / self.rate
            if d[0] & 0xF0 == 0x90 and d[2] > 0:
                out.append((frame, t, "on", d[1]))
            elif d[0] & 0xF0 in (0x80, 0x90):
                out.append((frame, t, "off", d[1]))
        return out

    def close(self):
        self.client.deactivate()
        self.client.close()


class Sender:
    def __init__(self, name: str):
        import jack
        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.midi_outports.register("out")
        self.queue: list[tuple[int, bytes]] = []
        self.sent: list[tuple[int, bytes]] = []   # (frame written at, bytes)
        self.lock = threading.Lock()
        self.client.set_process_callback(self._process)
        self.client.activate()
        self.rate = self.client.samplerate

    def at(self, frame: int, data: bytes):
        with self.lock:
            self.queue.append((frame, data))
            self.queue.sort()

    def _process(self, frames):
        self.port.clear_buffer()
        base = self.client.last_frame_time
        with self.lock:
            due = [e for e in self.queue if e[0] < base + frames]
            self.queue = self.queue[len(due):]
        for frame, d in due:
            offset = max(0, frame - base)
            self.port.write_midi_event(offset, d)
            self.sent.append((base + offset, d))

    def close(self):
        self.client.deactivate()
        self.client.close()


class ClockMaster:
    """jack_midi_clock (24 ppqn from JACK transport) with jack_transport as timebase
    master, driven through jack_transport's commands (tempo N, play, stop, locate 0)."""

    def __init__(self):
        for tool in ("jack_midi_clock", "jack_transport"):
            if not shutil.which(tool):
                sys.exit(f"bench_live: {tool} is not installed (apt-get install "
                         "jack-midi-clock jackd2)")
        self.clock = subprocess.Popen(["jack_midi_clock"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        self.transport = subprocess.Popen(["jack_transport"], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, text=True)
        for _ in range(100):
            listing = subprocess.run(["timeout", "5", "jack_lsp"], capture_output=True,
                                     text=True).stdout
            if "jack_midi_clock:mclk_out" in listing:
                break
            time.sleep(0.1)
        self.say("master")
        self.say("stop")
        self.say("locate 0")

    port = "jack_midi_clock:mclk_out"

    def say(self, command: str) -> None:
        self.transport.stdin.write(command + "\n")
        self.transport.stdin.flush()

    def close(self) -> None:
        for proc in (self.transport, self.clock):
            stop_process(proc)


# ----------------------------------------------------------------------------- analysis


def deviations(times: np.ndarray, frames: np.ndarray, t0: float, dt: float,
               rate: int, slots: list) -> dict:
    """Seconds from each event's ideal grid time t0 + k*dt to when JACK delivered it; from
    the engine's actual send of that frame to the delivery (the transport); and the
    inter-onset deviation in the dummy backend's own frames (see the module doc)."""
    late = {int(f): x for f, x in slots}
    # the final note-offs of the shutdown are not on the grid: leave them out
    last_sent = t0 + max(late) * dt + late[max(late)] + 0.05
    keep = times <= last_sent
    times, frames = times[keep], frames[keep]
    k = np.round((times - t0) / dt)
    absolute = times - (t0 + k * dt)
    sent = np.array([t0 + line * dt + late.get(int(line), np.nan) for line in k])
    transport = times - sent
    transport = transport[np.isfinite(transport)]
    lines = np.unique(k)
    line_frame = np.array([np.median(frames[k == line]) for line in lines])
    steps = np.diff(line_frame) / np.diff(lines) - dt * rate
    a = np.vstack([lines, np.ones_like(lines)]).T
    coef = np.linalg.lstsq(a, line_frame, rcond=None)[0]
    return {"absolute": absolute, "interval": steps / rate, "transport": transport,
            "drift_ppm": (coef[0] / (dt * rate) - 1) * 1e6}


def pct(x: np.ndarray) -> str:
    a = np.abs(x) * 1000
    return "p50 {:.3f}  p99 {:.3f}  max {:.3f} ms".format(*np.percentile(a, [50, 99, 100]))


def count_recorded(path: Path) -> int:
    import mido
    midi = mido.MidiFile(path)
    ours = midi.tracks[2]
    return sum(1 for m in ours if m.type in ("note_on", "note_off"))


def grid_deviation(frames: np.ndarray, t0_frame: float, dt_frames: float,
                   rate: int) -> np.ndarray:
    """Seconds from each event's ideal grid frame t0 + k*dt to its own frame: on the
    JACK-native path the grid is in JACK frames, so no clock mapping is needed."""
    k = np.round((frames - t0_frame) / dt_frames)
    return (frames - (t0_frame + k * dt_frames)) / rate


def frame_ticks(clock: list[tuple[int, bytes]], ticks_per_frame: int) -> np.ndarray:
    """Frames of every ticks_per_frame-th clock tick of each run (Start/Continue ..
    Stop), counting song position as a follower does."""
    out, position, running = [], 0, False
    for frame, data in clock:
        status = data[0]
        if status in (0xFA, 0xFB):
            position = 0 if status == 0xFA else position
            running = True
        elif status == 0xFC:
            running = False
        elif status == 0xF2:
            position = 6 * (data[1] | data[2] << 7)
        elif status == 0xF8 and running:
            if position % ticks_per_frame == 0:
                out.append(frame)
            position += 1
    return np.array(out, dtype=np.float64)


def hanging(notes) -> int:
    """Notes left sounding by (frame, ..., kind, note) events in arrival order."""
    sounding: set[int] = set()
    for event in notes:
        kind, note = event[-2], event[-1]
        (sounding.add if kind == "on" else sounding.discard)(note)
    return len(sounding)


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def ms3(x: np.ndarray) -> str:
    a = np.abs(x) * 1000
    return " / ".join(f"{v:.3f}" for v in np.percentile(a, [50, 99, 100])) if len(a) else "-"


def recorded_onsets(record: Path, t0: float, rate: int) -> np.ndarray:
    """The player's note-ons in a --record file, as frames (of t0's clock) * rate."""
    import mido
    midi = mido.MidiFile(record)
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    seconds_per_tick = tempo / 1e6 / midi.ticks_per_beat
    tick, out = 0, []
    for msg in midi.tracks[1]:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity:
            out.append(round((t0 + tick * seconds_per_tick) * rate))
    return np.array(out, dtype=float)
