"""The live engine's invariant over many long random streams (tests/live_streams.py), every
mode and both clocks, on the fake clock; prints a table and the seeds that failed.

    .venv/bin/python scripts/soak_invariants.py --streams 200 --frames 1000

After every step of the sending side the output must sound exactly what the model side
believes, accompany must never sound a note the player holds, and every note-on must get
its note-off. A failing seed goes into tests/test_live_invariants.py's REGRESSIONS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=100, help="per mode and clock")
    p.add_argument("--frames", type=int, default=1000, help="grid frames per stream")
    p.add_argument("--first-seed", type=int, default=1000)
    args = p.parse_args()
    from test_live_invariants import MODES, run_stream
    print(f"{'mode':<10} {'clock':<9} {'streams':>7} {'music s':>8} {'checks':>9} "
          f"{'messages':>9} {'seconds':>8} {'failed':>6}")
    failed_seeds = []
    totals = [0, 0, 0, 0, 0.0]
    for mode in MODES:
        for clock in ("internal", "midi"):
            start = time.monotonic()
            frames = checks = messages = 0
            failed = 0
            for seed in range(args.first_seed, args.first_seed + args.streams):
                check, sink, engine = run_stream(mode, clock, seed, args.frames)
                frames += engine.clock.now() - (engine.t0 or 0.0)  # seconds of music
                checks += check.checks
                messages += len(sink.sent)
                if check.failures or engine.failure is not None or _hanging(sink):
                    failed += 1
                    failed_seeds.append((mode, clock, seed))
            seconds = time.monotonic() - start
            print(f"{mode:<10} {clock:<9} {args.streams:>7} {frames:>8.0f} {checks:>9} "
                  f"{messages:>9} {seconds:>8.1f} {failed:>6}", flush=True)
            for i, value in enumerate((args.streams, frames, checks, messages, seconds)):
                totals[i] += value
    print(f"{'total':<20} {totals[0]:>7} {totals[1]:>8.0f} {totals[2]:>9} {totals[3]:>9} "
          f"{totals[4]:>8.1f} {len(failed_seeds):>6}")
    for seed in failed_seeds:
        print("failed:", seed)
    return 1 if failed_seeds else 0


def _hanging(sink) -> bool:
    sounding = set()
    for _, m in sink.sent:
        if m.type == "note_on" and m.velocity:
            sounding.add(m.note)
        elif m.type in ("note_on", "note_off"):
            sounding.discard(m.note)
    return bool(sounding)


if __name__ == "__main__":
    sys.exit(main())
