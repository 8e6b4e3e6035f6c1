#!/usr/bin/env python3
"""Timing of rnnrbm-live's MIDI as independent JACK clients see it: the JACK-native path
(--backend jack-native) beside the RtMidi path (--backend jack), in the same run.

1. Output. For each setting (100 bpm eighth notes; 240 bpm sixteenth notes), with and
   without a busy process, each path runs in its own process in generate mode for
   --seconds, playing into a JACK-Client receiver that stamps every event with its sample
   frame (last_frame_time + offset). Reported: deviation of every note event from the
   ideal grid t0 + k*dt (p50/p99/max), events lost (sent per --record minus received),
   notes left hanging, and xruns the receiver saw (and, for comparison, saw with no
   engine running at all, just before each setting's runs: the machine's own xruns).
   On the native path the grid is in JACK frames, so the deviation is frame arithmetic;
   on the RtMidi path the grid is on the monotonic clock and frames are mapped to it
   through the receiver's cycles (the lower envelope of perf_counter - frame/rate).
2. Input. A JACK-Client sender plays notes at known odd frames into the continue mode
   with --record: each recorded onset against the frame it was played at (native: its
   sample, from the file's own tempo and t0; both paths: inter-onset deviation).
3. MIDI clock. jack_midi_clock driven by jack_transport (tempo changes every fifth of the
   run, a stop, a locate while stopped and a new start half way): deviation of every
   note-on from its frame's tick (every 12th tick for eighth notes), notes while stopped.
4. Continue mode: how soon the answer follows the end of the silence span (in frames).

Goal (issue 14): native p99 <= 0.05 ms, nothing lost, no xrun caused by the engine.

    python scripts/bench_live.py                 # 120 s per run: about 35 minutes
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_jack import (JACK_ENV, ClockMaster, Receiver, Sender, count_recorded,  # noqa: E402
                        deviations, frame_ticks, grid_deviation, hanging, ms3,
                        recorded_onsets, row, start_jack, stop_process)

PATHS = {"native": "jack-native", "rtmidi": "jack"}   # our name -> --backend


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


def engine_cmd(model: str, path: str, *args: str, quiet: bool = True) -> list[str]:
    return [sys.executable, "-m", "rnnrbm_live.cli", "--model", model, "--backend",
            PATHS[path], "--seed", "1", *(("-q",) if quiet else ()), *args]


def engine_env() -> dict:
    env = os.environ.copy()
    env.update(JACK_ENV)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_engine(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=engine_env(), cwd=str(REPO))
    if done.returncode != 0:
        sys.exit(f"bench_live: the engine failed ({done.returncode}): {done.stderr.strip()}")
    return done


def launch(cmd: list[str]) -> subprocess.Popen:
    """The engine in its own process, returned once it plays (or waits for the clock)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=engine_env(), cwd=str(REPO))
    lines: list[str] = []
    ready, ended = threading.Event(), threading.Event()

    def read():
        # The ready line of each mode: generate/accompany play, continue listens, a
        # clock follower waits; an error or the end of the output is no start.
        for line in proc.stderr:
            lines.append(line)
            if any(w in line for w in ("playing", "listening on", "waiting for the daw", "error")):
                ready.set()
        ended.set()
        ready.set()
    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or ended.is_set() or "error" in "".join(lines):
        stop_process(proc)
        sys.exit("bench_live: the engine did not start: " + "".join(lines[-5:]))
    return proc


def busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


# ----------------------------------------------------------------------------- output


def timing_run(model: str, path: str, bpm: float, fpb: int, seconds: float, busy: bool,
               folder: Path) -> dict:
    recv = Receiver("bench-recv")
    tag = f"{path}-{bpm:g}-{fpb}-{int(busy)}"
    record, stats_path = folder / f"take-{tag}.mid", folder / f"stats-{tag}.json"
    hog = busy_process() if busy else None
    try:
        run_engine(engine_cmd(model, path, "--mode", "generate", "--bpm", f"{bpm:g}",
                              "--frames-per-beat", str(fpb), "--out-port", "bench-recv:in",
                              "--stop-after", f"{seconds:g}", "--record", str(record),
                              "--stats-json", str(stats_path)), timeout=seconds + 60)
        time.sleep(0.3)
    finally:
        stop_process(hog)
        notes, raw, xruns = recv.timed_notes(), recv.raw(), recv.xruns
        recv.close()
    stats = json.loads(stats_path.read_text())
    sent = count_recorded(record)
    t0, dt = stats["t0"] + stats["latency_s"], stats["frame_seconds"]
    frames = np.array([f for f, _, _, _ in notes], dtype=np.float64)
    if path == "native":
        rate = stats["jack_rate"]
        final = max(f for f, d in raw if d[0] & 0xF0 == 0xB0 and d[1] == 123)
        # The shutdown's note-offs are not on the grid (they may fall a period before
        # the CC 123): keep what came before half a frame past the last frame played.
        last_frame = max(k for k, _ in stats["slots"])
        end = min(final, (t0 + (last_frame + 0.5) * dt) * rate)
        on_grid = frames[frames < end]
        absolute = grid_deviation(on_grid, t0 * rate, dt * rate, rate)
        engine_late = stats["jack_late_events"]
    else:
        times = np.array([t for _, t, _, _ in notes])
        absolute = deviations(times, frames, t0, dt, recv.rate, stats["slots"])["absolute"]
        engine_late = stats["late_frames"]
    return {"path": path, "bpm": bpm, "fpb": fpb, "busy": busy, "events": len(notes),
            "lost": sent - len(notes), "hanging": hanging(notes), "xruns": xruns,
            "absolute": absolute, "engine_late": engine_late, "stats": stats,
            "period_ms": 1000 * recv.period / recv.rate}


def baseline_xruns(seconds: float, busy: bool) -> int:
    """Xruns the receiver sees with no engine at all: the machine's own share."""
    recv = Receiver("bench-recv")
    hog = busy_process() if busy else None
    try:
        time.sleep(seconds)
    finally:
        stop_process(hog)
        xruns = recv.xruns
        recv.close()
    return xruns


# ----------------------------------------------------------------------------- input


def input_run(model: str, path: str, notes: int, folder: Path) -> dict:
    """Notes played at known odd frames, 0.15 s apart, into continue mode with --record."""
    send = Sender("bench-send")
    record, stats_path = folder / f"in-{path}.mid", folder / f"in-{path}.json"
    seconds = notes * 0.15 + 4
    proc = launch(engine_cmd(model, path, "--mode", "continue", "--bpm", "100",
                             "--in-port", "bench-send:out", "--record", str(record),
                             "--stats-json", str(stats_path), "--stop-after", f"{seconds:g}",
                             quiet=False))
    try:
        rate = send.rate
        start = send.client.frame_time + int(0.5 * rate)   # after the engine's frame 0
        rng = np.random.default_rng(3)
        for i in range(notes):
            on = start + int(i * 0.15 * rate) + int(rng.integers(0, 64))
            note = int(rng.integers(60, 72))
            send.at(on, bytes([0x90, note, 90]))
            send.at(on + int(0.1 * rate), bytes([0x80, note, 0]))
        if proc.wait(seconds + 60) != 0:
            sys.exit(f"bench_live: the engine failed ({proc.returncode})")
        played = np.array([f for f, d in send.sent if d[0] & 0xF0 == 0x90], dtype=float)
    finally:
        stop_process(proc)
        send.close()
    stats = json.loads(stats_path.read_text())
    onsets = recorded_onsets(record, stats["t0"], rate)
    out = {"played": len(played), "recorded": len(onsets)}
    if len(onsets) == len(played):
        out["interval"] = (np.diff(onsets) - np.diff(played)) / rate
        if path == "native":
            out["absolute"] = (onsets - played) / rate
    return out


# ----------------------------------------------------------------------------- clock


def clock_run(model: str, path: str, seconds: float) -> dict:
    """Frames on jack_midi_clock's ticks through tempo changes, a stop and a start."""
    recv, ticks, master = Receiver("bench-recv"), Receiver("bench-ticks"), ClockMaster()
    subprocess.run(["jack_connect", master.port, "bench-ticks:in"], check=True, timeout=10)
    proc = launch(engine_cmd(model, path, "--mode", "generate", "--clock", "midi",
                             "--in-port", master.port, "--out-port", "bench-recv:in",
                             quiet=False))
    stopped = []
    try:
        step = seconds / 5
        for i, tempo in enumerate((120, 150, 100, 137, 120)):
            master.say(f"tempo {tempo}")
            if i == 0:
                master.say("play")
            if i == 3:  # a stop, a locate while stopped, a new start
                master.say("stop")
                time.sleep(1.0)
                stopped.append(ticks.client.frame_time)
                master.say("locate 0")
                time.sleep(0.5)
                stopped.append(ticks.client.frame_time)
                master.say("play")
            time.sleep(step)
        master.say("stop")
        time.sleep(0.5)
    finally:
        stop_process(proc)
        master.close()
        notes, clock = recv.notes(), ticks.raw()
        xruns = recv.xruns
        recv.close()
        ticks.close()
    lines = frame_ticks(clock, 12)
    ons = np.array(sorted({f for f, kind, _ in notes if kind == "on"}), dtype=float)
    idx = np.clip(np.searchsorted(lines, ons), 1, len(lines) - 1)
    nearest = np.where(np.abs(ons - lines[idx - 1]) < np.abs(ons - lines[idx]),
                       lines[idx - 1], lines[idx])
    while_stopped = int(np.sum((ons > stopped[0]) & (ons < stopped[1]))) if stopped else 0
    return {"deviation": (ons - nearest) / recv.rate, "notes": len(ons),
            "while_stopped": while_stopped, "hanging": hanging(notes), "xruns": xruns}


def answer_trials(model: str, path: str, trials: int) -> list[float]:
    """Continue mode at 100 bpm: end of the silence span -> the answer's first note-on,
    in frames of the grid (0.3 s); positive = later."""
    recv = Receiver("bench-recv")
    send = Sender("bench-send")
    bpm, dt = 100.0, 0.3
    bar = 8 * dt
    phrase_frames = 8
    proc = launch(engine_cmd(model, path, "--mode", "continue", "--bpm", f"{bpm:g}",
                             "--in-port", "bench-send:out", "--out-port", "bench-recv:in",
                             quiet=False))
    results = []
    try:
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


def output_section(model, paths, settings, busy_modes, seconds, folder) -> bool:
    print("\noutput: deviation of every note event from the grid t0 + k*dt, as an "
          "independent jack client stamps it (ms)\n")
    print(row(("path", "grid", "load", "events", "lost", "hanging", "xruns",
               "p50 / p99 / max", "engine late")))
    print(row(("---",) * 9), flush=True)
    ok = True
    for bpm, fpb in settings:
        for busy in busy_modes:
            # The machine's own xruns, next to each pair of runs: an engine's xruns
            # beyond this baseline (and its run-to-run spread) are the engine's.
            print(row(("no engine", f"{bpm:g} bpm, 1/{4 * fpb}", "busy" if busy else "none",
                       "-", "-", "-", baseline_xruns(seconds, busy), "-", "-")), flush=True)
            for path in paths:
                r = timing_run(model, path, bpm, fpb, seconds, busy, folder)
                if path == "native":
                    p99 = float(np.percentile(np.abs(r["absolute"]), 99)) * 1000
                    ok &= r["lost"] == 0 and r["hanging"] == 0 and p99 <= 0.05
                print(row((path, f"{bpm:g} bpm, 1/{4 * fpb}", "busy" if busy else "none",
                           r["events"], r["lost"], r["hanging"], r["xruns"],
                           ms3(r["absolute"]), r["engine_late"])), flush=True)
    return ok


def input_section(model, paths, notes, folder) -> bool:
    print("\ninput: recorded onsets against the frames they were played at (ms; the "
          "rtmidi path's file holds 480 ticks a beat, 1.25 ms at 100 bpm)\n")
    print(row(("path", "played", "recorded", "onset p50 / p99 / max",
               "inter-onset p50 / p99 / max")))
    print(row(("---",) * 5))
    ok = True
    for path in paths:
        r = input_run(model, path, notes, folder)
        if path == "native":
            ok &= r["recorded"] == r["played"] and \
                float(np.max(np.abs(r.get("absolute", [1])))) == 0.0
        print(row((path, r["played"], r["recorded"], ms3(r.get("absolute", [])),
                   ms3(r.get("interval", [])))), flush=True)
    return ok


def clock_section(model, paths, seconds) -> bool:
    print("\nmidi clock (jack_midi_clock): note-ons against their frame's tick (ms)\n")
    print(row(("path", "note-ons", "p50 / p99 / max", "while stopped", "hanging", "xruns")))
    print(row(("---",) * 6))
    ok = True
    for path in paths:
        r = clock_run(model, path, seconds)
        if path == "native":
            p99 = float(np.percentile(np.abs(r["deviation"]), 99)) * 1000
            ok &= p99 <= 0.05 and r["while_stopped"] == 0 and r["hanging"] == 0
        print(row((path, r["notes"], ms3(r["deviation"]), r["while_stopped"], r["hanging"],
                   r["xruns"])), flush=True)
    return ok


def answers_section(model, path, trials) -> bool:
    res = answer_trials(model, path, trials)
    shown = ", ".join(f"{x:+.2f}" for x in res)
    within = all(abs(x) <= 1.0 for x in res if x == x) and all(x == x for x in res)
    print(f"\ncontinue mode ({path}), 100 bpm: answer's first note - end of the silence "
          f"span, in frames (0.3 s): {shown} -> {'within' if within else 'NOT within'} "
          "one frame")
    return within


# ----------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=120.0,
                   help="length of each timing and clock run (default %(default)g)")
    p.add_argument("--settings", default="100:2,240:4",
                   help="BPM:FRAMES_PER_BEAT list (default %(default)s)")
    p.add_argument("--busy", choices=("both", "off", "on"), default="both",
                   help="runs with a busy process, without one, or both (default both)")
    p.add_argument("--paths", default="native,rtmidi",
                   help="native (--backend jack-native), rtmidi (--backend jack) or both")
    p.add_argument("--input-notes", type=int, default=200,
                   help="notes played into the input per path (default %(default)s)")
    p.add_argument("--sections", default="output,input,clock,answers",
                   help="which parts to run (default %(default)s)")
    p.add_argument("--answer-trials", type=int, default=4,
                   help="continue-mode answers to time (default %(default)s)")
    p.add_argument("--model", default=None,
                   help="model name or STEM.onnx (default: nottingham if bundled, else a "
                        "random-init model exported for the bench)")
    p.add_argument("--period", type=int, default=64,
                   help="jack period when the bench starts jackd (default %(default)s)")
    args = p.parse_args()
    paths = [x for x in args.paths.split(",") if x]
    sections = set(args.sections.split(","))
    if not paths or set(paths) - set(PATHS):
        p.error(f"--paths {args.paths}: give native, rtmidi or native,rtmidi")

    jackd = start_jack(args.period)
    folder = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        model = bench_model(args.model, folder)
        settings = [(float(b), int(f)) for b, f in
                    (s.split(":") for s in args.settings.split(","))]
        busy_modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.busy]
        print(f"bench_live: {args.seconds:g} s per run, model {model}, "
              f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}", flush=True)
        ok = True
        if "output" in sections:
            ok &= output_section(model, paths, settings, busy_modes, args.seconds, folder)
        if "input" in sections:
            ok &= input_section(model, paths, args.input_notes, folder)
        if "clock" in sections:
            ok &= clock_section(model, paths, args.seconds)
        if "answers" in sections:
            ok &= answers_section(model, paths[0], args.answer_trials)
        print("\ngoal (native: p99 <= 0.05 ms on the grid and on clock ticks, onsets to the "
              "sample, nothing lost or hanging): " + ("met" if ok else "NOT met"))
        return 0 if ok else 1
    finally:
        stop_process(jackd)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
