"""How late the first frame after a MIDI Start comes, on a real JACK server.

    JACK_DEFAULT_SERVER=NAME .venv/bin/python scripts/bench_midi_start.py --runs 5

A JACK client (tests/conftest.py's JackSender) sends Start and tick 0 in the same period,
then a 120 bpm clock; another (JackReceiver) stamps what rnnrbm-live (generate, --clock
midi) plays. Prints, per run, the first note's delay after tick 0 and the median delay of
the later frames after their ticks, in milliseconds of the server's frame clock.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def one_run(model: Path, run: int) -> tuple[float, float]:
    from conftest import EngineProcess, JackReceiver, JackSender, jack_ports
    receiver = JackReceiver(f"bstart-recv{run}")
    sender = JackSender(f"bstart-send{run}")
    p = EngineProcess(["--model", str(model), "--backend", "jack", "--mode", "generate",
                       "--clock", "midi", "--client-name", f"bstart{run}",
                       "--in-port", sender.name, "--out-port", receiver.name, "-q"])
    try:
        deadline = time.monotonic() + 60                # the engine opens its ports
        while time.monotonic() < deadline and not any(
                port.startswith(f"bstart{run}:") for port in jack_ports()):
            time.sleep(0.2)
        time.sleep(1.0)                                 # ... and starts its engine
        rate = receiver.rate
        period = round(60 / 120 / 24 * rate)
        start = sender.frame_time() + int(0.5 * rate)
        sender.at(start, bytes([0xFA]))
        ticks = [start + i * period for i in range(24 * 8)]
        for f in ticks:
            sender.at(f, bytes([0xF8]))
        time.sleep((ticks[-1] - sender.frame_time()) / rate + 0.5)
        ons = sorted({f for f, kind, _ in receiver.note_events() if kind == "on"})
        delays = []   # per frame tick: its frame's first note after it (None: none)
        for tick in ticks[::12]:
            after = [f - tick for f in ons if 0 <= f - tick < period * 6]
            delays.append(1000 * min(after) / rate if after else None)
        later = [d for d in delays[1:] if d is not None]
        return delays[0], statistics.median(later) if later else float("nan")
    finally:
        p.proc.terminate()
        p.proc.wait(20)
        receiver.close()
        sender.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", default=None, help="default: a small random test model")
    args = ap.parse_args()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    model = Path(args.model) if args.model else None
    if model is None:
        import tempfile
        from conftest import _export_test_model
        model = _export_test_model(Path(tempfile.mkdtemp()))
    print(f"{'run':>3} {'first frame ms':>15} {'later frames ms (median)':>25}")
    for run in range(args.runs):
        first, later = one_run(model, run)
        shown = (f"{first:.2f}" if first is not None else "skipped" if later == later
                 else "no notes")  # no notes at all: the engine missed the Start
        print(f"{run:>3} {shown:>15} {later:>25.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
