#!/usr/bin/env python3
"""Timing of rnnrbm-live's note events as an independent JACK client sees them.

For each setting (100 bpm eighth notes; 240 bpm sixteenth notes), with and without a
busy process competing for the CPUs, the engine runs in its own process in generate mode
for --seconds, playing into a JACK-Client receiver. The receiver stamps every event with
its sample-accurate frame (last_frame_time + offset in its process callback). Reported:

- deviation from the ideal grid, p50/p99/max: each event against its grid time
  t0 + k*dt (t0 from the engine's --stats-json). JACK's dummy backend counts frames on
  its own timer, which drifts from the monotonic clock and loses time at every "XRun"
  it logs, so frames are mapped to the engine's clock through the receiver's cycles: the
  lower envelope of perf_counter - frame/rate over +-0.1 s is when each cycle began;
- the transport alone: the engine's actual send of each frame -> delivered;
- inter-onset deviation in the dummy backend's own frames (no clock mapping at all);
- the engine's own send lateness (due time -> sent, on its clock), p50/p99/max;
- events lost: note messages the engine sent (its --record file) minus those received,
  and notes left hanging.

RtMidi's JACK output writes every event at offset 0 of a period, so the transport alone
is worth up to one period either way (an event sent during a cycle that has not yet been
processed lands at that cycle's start, before it was sent).

Then continue mode: a JACK-Client sender plays short phrases; the time from the end of
the silence span (last note-off + one bar) to the answer's first note-on is measured,
in frames of the grid: the goal is within one frame.

Goal: p99 within one JACK period (1.33 ms at 48 kHz, -p 64), zero lost.

    python scripts/bench_live.py                 # 120 s per run (4 runs and 4 answers: ~10 minutes)
    python scripts/bench_live.py --seconds 20    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

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
    for _ in range(100):
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
        self.client.set_process_callback(self._process)
        self.client.activate()
        self.rate = self.client.samplerate
        self.period = self.client.blocksize

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
            self.port.write_midi_event(max(0, frame - base), d)

    def close(self):
        self.client.deactivate()
        self.client.close()


# ----------------------------------------------------------------------------- model


def bench_model(requested: str | None, folder: Path) -> str:
    if requested:
        return requested
    try:
        from rnnrbm_live.model.card import load_model
        load_model("nottingham")
        return "nottingham"
    except Exception:
        pass
    import torch
    from rnnrbm_export.model import RNNRBM, RNNRBMConfig
    from rnnrbm_export.onnx_export import export_model
    torch.manual_seed(7)
    config = RNNRBMConfig(init_std=0.5, init_recurrent_std=0.3, dataset="random (bench)")
    paths = export_model(RNNRBM(config), {"metrics": None}, folder / "bench")
    print(f"(no bundled model: a random-init model, {config.gibbs_steps} gibbs steps)")
    return str(paths["onnx"])


def engine_cmd(model: str, *args: str, quiet: bool = True) -> list[str]:
    return [sys.executable, "-m", "rnnrbm_live.cli", "--model", model, "--backend", "jack",
            "--seed", "1", *(("-q",) if quiet else ()), *args]


def run_engine(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = os.environ.copy()
    env.update(JACK_ENV)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(REPO))


def busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


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


def timing_run(model: str, bpm: float, fpb: int, seconds: float, busy: bool,
               folder: Path) -> dict:
    recv = Receiver("bench-recv")
    record = folder / f"take-{bpm:g}-{fpb}-{int(busy)}.mid"
    stats_path = folder / f"stats-{bpm:g}-{fpb}-{int(busy)}.json"
    hog = busy_process() if busy else None
    try:
        done = run_engine(engine_cmd(model, "--mode", "generate", "--bpm", f"{bpm:g}",
                                     "--frames-per-beat", str(fpb), "--out-port",
                                     "bench-recv:in", "--stop-after", f"{seconds:g}",
                                     "--record", str(record), "--stats-json",
                                     str(stats_path)), timeout=seconds + 60)
        time.sleep(0.3)
    finally:
        stop_process(hog)
        notes = recv.timed_notes()
        recv.close()
    if done.returncode != 0:
        sys.exit(f"bench_live: the engine failed ({done.returncode}): {done.stderr.strip()}")
    stats = json.loads(stats_path.read_text())
    sent = count_recorded(record)
    frames = np.array([f for f, _, _, _ in notes], dtype=np.float64)
    times = np.array([t for _, t, _, _ in notes])
    sounding: dict[int, int] = {}
    for _, _, kind, n in notes:
        sounding[n] = sounding.get(n, 0) + (1 if kind == "on" else -1)
    dev = deviations(times, frames, stats["t0"] + stats["latency_s"],
                     stats["frame_seconds"], recv.rate, stats["slots"])
    return {"bpm": bpm, "fpb": fpb, "busy": busy, "events": len(notes), "sent": sent,
            "lost": sent - len(notes), "hanging": sum(1 for v in sounding.values() if v > 0),
            "rate": recv.rate, "period": recv.period, "dev": dev, "stats": stats}


def answer_trials(model: str, trials: int, folder: Path) -> list[float]:
    """Continue mode at 100 bpm: end of the silence span -> the answer's first note-on,
    in frames of the grid (0.3 s); positive = later."""
    recv = Receiver("bench-recv")
    send = Sender("bench-send")
    bpm, dt = 100.0, 0.3
    bar = 8 * dt
    phrase_frames = 8
    env = os.environ.copy()
    env.update(JACK_ENV)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(engine_cmd(model, "--mode", "continue", "--bpm", f"{bpm:g}",
                                       "--in-port", "bench-send:out", "--out-port",
                                       "bench-recv:in", quiet=False),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(REPO))
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "playing" in line or "error" in line:
                ready.set()
        ready.set()
    threading.Thread(target=read, daemon=True).start()
    results = []
    try:
        if not ready.wait(60) or proc.poll() is not None:
            sys.exit("bench_live: the engine did not start: " + "".join(lines[-5:]))
        rate = recv.rate
        rng = np.random.default_rng(5)
        e_major = [64, 66, 68, 69, 71, 73, 75, 76]
        for _ in range(trials):
            start = send.client.frame_time + int(0.5 * rate)
            # a phrase that does not sit on the engine's grid: frames of 0.3 s, shifted
            shift = int(rng.uniform(0, dt) * rate)
            last_off = 0
            for i in range(phrase_frames):
                n = int(rng.choice(e_major))
                on = start + shift + int(i * dt * rate)
                off = on + int(0.8 * dt * rate)
                send.at(on, bytes([0x90, n, 90]))
                send.at(off, bytes([0x80, n, 0]))
                last_off = max(last_off, off)
            target = last_off + bar * rate
            wait = (last_off - send.client.frame_time) / rate + bar + phrase_frames * dt + 1.5
            time.sleep(max(0.0, wait))
            ons = [f for f, kind, _ in recv.notes() if kind == "on" and f > last_off]
            if ons:
                results.append((min(ons) - target) / (dt * rate))
            else:
                results.append(float("nan"))
    finally:
        stop_process(proc)
        send.close()
        recv.close()
    return results


# ----------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=120.0,
                   help="length of each timing run (default %(default)g)")
    p.add_argument("--settings", default="100:2,240:4",
                   help="BPM:FRAMES_PER_BEAT list (default %(default)s)")
    p.add_argument("--busy", choices=("both", "off", "on"), default="both",
                   help="runs with a busy process, without one, or both (default both)")
    p.add_argument("--answer-trials", type=int, default=4,
                   help="continue-mode answers to time (default %(default)s; 0: none)")
    p.add_argument("--model", default=None,
                   help="model name or STEM.onnx (default: nottingham if bundled, else a "
                        "random-init model exported for the bench)")
    p.add_argument("--period", type=int, default=64,
                   help="jack period when the bench starts jackd (default %(default)s)")
    args = p.parse_args()

    jackd = start_jack(args.period)
    folder = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        model = bench_model(args.model, folder)
        settings = [(float(b), int(f)) for b, f in
                    (s.split(":") for s in args.settings.split(","))]
        busy_modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.busy]
        print(f"bench_live: {args.seconds:g} s per run, model {model}, "
              f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")
        ok = True
        for bpm, fpb in settings:
            for busy in busy_modes:
                r = timing_run(model, bpm, fpb, args.seconds, busy, folder)
                rate, period = r["rate"], r["period"]
                period_ms = period / rate * 1000
                s = r["stats"]
                lat = s["send_lateness_ms"]
                absolute = r["dev"]["absolute"]
                p99 = float(np.percentile(np.abs(absolute), 99)) * 1000
                ok &= r["lost"] == 0 and r["hanging"] == 0 and p99 <= period_ms
                print(f"\n{bpm:g} bpm, {fpb} frames/beat ({60 / bpm / fpb * 1000:.1f} ms "
                      f"grid), {'busy process' if busy else 'no extra load'}: "
                      f"{r['events']} note events received, {r['sent']} sent, "
                      f"lost {r['lost']}, hanging {r['hanging']}")
                print(f"  deviation from the grid, t0 + k*dt -> delivered: {pct(absolute)}"
                      f" (min {absolute.min() * 1000:+.3f}) [one period: {period_ms:.2f} ms]")
                print(f"  engine's actual send -> delivered (the transport): "
                      f"{pct(r['dev']['transport'])} (min "
                      f"{r['dev']['transport'].min() * 1000:+.3f})")
                print(f"  inter-onset deviation in dummy-backend frames: "
                      f"{pct(r['dev']['interval'])} (its clock drift "
                      f"{r['dev']['drift_ppm']:+.0f} ppm)")
                print(f"  engine send lateness (its clock):    p50 {lat['p50']:.3f}  "
                      f"p99 {lat['p99']:.3f}  max {lat['max']:.3f} ms; "
                      f"{s['late_frames']} of {s['frames_sent']} frames over 2 ms late, "
                      f"{s['skipped_frames']} skipped; model {s['step_ms']} ms/frame on "
                      f"{s['provider']}")
        if args.answer_trials > 0:
            res = answer_trials(model, args.answer_trials, folder)
            shown = ", ".join(f"{x:+.2f}" for x in res)
            within = all(abs(x) <= 1.0 for x in res if x == x) and all(x == x for x in res)
            ok &= within
            print(f"\ncontinue mode, 100 bpm: answer's first note - end of the silence span, "
                  f"in frames (0.3 s): {shown} -> {'within' if within else 'NOT within'} "
                  "one frame")
        print("\ngoal (p99 <= one period, nothing lost or hanging, answers within a frame): "
              + ("met" if ok else "NOT met"))
        return 0 if ok else 1
    finally:
        stop_process(jackd)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
