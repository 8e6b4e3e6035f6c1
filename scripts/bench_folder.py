"""The folder path at scale: parsing a corpus of MIDI files, then loading its train split
into memory or memory-mapped, and one epoch of training on it.

Needs a big folder of real MIDI files, e.g. the ~13,000 folk tunes of
scripts/make_folk_corpus.py. Each row runs in a fresh process, so its peak memory
(ru_maxrss) is its own: "load peak" after loading the split, "peak MB" after the epoch too;
"anon" is the process's private memory at the end (RssAnon), which a memory-mapped corpus
does not add to (its pages are the page cache's, shared and evictable).
Run: python scripts/bench_folder.py runs/folk [--epoch-frames 0]"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def phase(folder: str, cache: str, mapped: bool, workers: int | None, epoch_frames: int) -> dict:
    """One row, in this process: load the train split, then (optionally) train one epoch."""
    import numpy as np
    import torch

    from rnnrbm_export import batching
    from rnnrbm_export.model import RNNRBM, RNNRBMConfig
    from rnnrbm_live.midi.datasets import load_split

    t0 = time.perf_counter()
    rolls = load_split(folder, "train", cache_dir=Path(cache), mapped=mapped, workers=workers, report=False)
    # lengths only: counting notes would read every page of a mapped corpus into memory
    row = {"load_s": time.perf_counter() - t0, "files": len(rolls), "frames": sum(len(roll) for roll in rolls)}
    row["load_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if epoch_frames >= 0:
        torch.manual_seed(0)
        model = RNNRBM(RNNRBMConfig())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        pieces = batching.chunk(rolls, 100)
        t0, frames = time.perf_counter(), 0.0
        for v, mask in batching.batches(pieces, 64, np.random.default_rng(0)):
            cost, _ = model.cd_loss(v, mask)
            opt.zero_grad(set_to_none=True)
            cost.backward()
            opt.step()
            frames += float(mask.sum())
            if epoch_frames and frames >= epoch_frames:
                break
        row.update(epoch_s=time.perf_counter() - t0, epoch_frames=frames)
    row["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["anon_mb"] = rss_anon_mb()
    return row


def in_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, args[0], "--phase", *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--epoch-frames", type=int, default=0,
                   help="stop the epoch after this many frames; 0 = whole, -1 = no epoch (loading only)")
    p.add_argument("--phase", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        folder, cache, mapped, workers, frames = args.phase
        print(json.dumps(phase(folder, cache, mapped == "1", None if workers == "auto" else int(workers), int(frames))))
        return
    n_files = sum(1 for f in Path(args.folder).rglob("*") if f.suffix.lower() in (".mid", ".midi"))
    cores = len(os.sched_getaffinity(0))
    print(f"{n_files} midi files in {args.folder}, {cores} cores; train split (80%); CD-15, 88/150/100, "
          f"chunks of 100 frames, 64 per update")
    print(f"{'row':<44} {'files':>6} {'seconds':>8} {'files/s':>8} {'load peak':>9} {'peak MB':>8} {'anon MB':>8} "
          f"{'epoch s':>8}")
    epoch = " + 1 epoch" if args.epoch_frames >= 0 else ""
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("parse, 1 process, cold cache (+ pack)", in_child(args.folder, f"{tmp}/a", "1", "0", "-1")),
                (f"parse, pool of {cores}, cold cache (+ pack)", in_child(args.folder, f"{tmp}/b", "1", "auto", "-1")),
                (f"load into memory (warm cache){epoch}", in_child(args.folder, f"{tmp}/b", "0", "0",
                                                                     str(args.epoch_frames))),
                (f"load memory-mapped (pack){epoch}", in_child(args.folder, f"{tmp}/b", "1", "0",
                                                                 str(args.epoch_frames)))]
    for name, r in rows:
        epoch = f"{r['epoch_s']:>8.1f}" if "epoch_s" in r else f"{'-':>8}"
        print(f"{name:<44} {r['files']:>6} {r['load_s']:>8.1f} {r['files'] / r['load_s']:>8.0f} "
              f"{r['load_peak_mb']:>9.0f} {r['peak_mb']:>8.0f} {r['anon_mb']:>8.0f} {epoch}")
    last = rows[-1][1]
    if "epoch_frames" in last:
        print(f"epoch: {last['epoch_frames']:,.0f} frames of {last['frames']:,} in the train split")


if __name__ == "__main__":
    main()
