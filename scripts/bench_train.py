"""Training throughput of the RNN-RBM (CD-15, default sizes), frames per second.

The tutorial's loop (SGD, one 100-frame chunk of one sequence per update) beside batched
updates (many chunks at once, padded), on the CPU and, when torch sees one, the GPU; then
rnnrbm-train itself under torchrun with 1 and 2 processes (and one per GPU where there
are GPUs): the same global batch, its second epoch's frames/s as the trainer logs it.
Run: python scripts/bench_train.py [--seconds 10] [--data nottingham] [--torchrun-seqs 300]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnrbm_export import batching
from rnnrbm_export.model import RNNRBM, RNNRBMConfig
from rnnrbm_live.midi.datasets import load_split


def frames_per_second(pieces, batch_size: int, device: str, seconds: float, optimizer: str) -> float:
    torch.manual_seed(0)
    model = RNNRBM(RNNRBMConfig()).to(device)
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    frames, warm, t0 = 0.0, 2, None
    while True:
        for v, mask in batching.batches(pieces, batch_size, rng, device):
            cost, _ = model.cd_loss(v, mask)
            opt.zero_grad(set_to_none=True)
            cost.backward()
            opt.step()
            if warm:  # the first updates pay for allocation and kernel selection
                warm -= 1
                if not warm:
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                continue
            frames += float(mask.sum())
            if time.perf_counter() - t0 > seconds:
                if device == "cuda":
                    torch.cuda.synchronize()
                return frames / (time.perf_counter() - t0)


def torchrun_frames_per_second(data: str, nproc: int, threads: int, seqs: int, seq_len: int, device: str) -> float:
    """The second epoch's frames/s of rnnrbm-train under torchrun (the first pays for warming up)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "rnnrbm_export.train", "--data", data, "--train-max-seqs", str(seqs), "--seq-len", str(seq_len),
               "--batch-size", "64", "--epochs", "2", "--valid-every", "99", "--valid-max-seqs", "1",
               "--valid-runs", "1", "--valid-temps", "2", "--threads", str(threads), "--device", device,
               "--out", out]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads((Path(out) / "last.json").read_text())["history"][1]["frames_per_s"]


def torchrun_rows(args) -> None:
    cores = len(os.sched_getaffinity(0))
    print(f"rnnrbm-train under torchrun: {args.torchrun_seqs} sequences of {args.data}, chunks of {args.seq_len}, "
          f"global batch 64, adam; {cores} cores")
    print(f"{'device':<6} {'processes':<44} {'frames/s':>12} {'vs 1 x 1':>12}")
    cases = [("cpu", 1, 1), ("cpu", 2, 1), ("cpu", 1, cores)]
    if torch.cuda.is_available():
        cases += [("cuda", n, 1) for n in sorted({1, torch.cuda.device_count()})]
    base = {}
    for device, n, threads in cases:
        fps = torchrun_frames_per_second(args.data, n, threads, args.torchrun_seqs, args.seq_len, device)
        base.setdefault(device, fps)
        name = f"torchrun --nproc-per-node {n}" + (f", {threads} thread(s) each" if device == "cpu" else "")
        print(f"{device:<6} {name:<44} {fps:>12,.0f} {fps / base[device]:>11.2f}x", flush=True)
    if not torch.cuda.is_available():
        print("no gpu: torch sees no cuda device, so the torchrun rows on gpus (nccl) were not measured")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="nottingham")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--torchrun-seqs", type=int, default=300, help="training sequences for the torchrun rows")
    p.add_argument("--only-torchrun", action="store_true", help="skip the single-process loops")
    args = p.parse_args()
    if args.only_torchrun:
        return torchrun_rows(args)
    pieces = batching.chunk(load_split(args.data, "train"), args.seq_len)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = [("tutorial: sgd, 1 chunk/update", 1, "sgd")] + [
        (f"batched: adam, {b} chunks/update", b, "adam") for b in (64, 256, 512)]
    print(f"data {args.data}, chunks of {args.seq_len} frames, CD-15, 88/150/100, "
          f"torch {torch.__version__}, {torch.get_num_threads()} cpu threads")
    print(f"{'device':<6} {'loop':<34} {'frames/s':>12} {'vs tutorial':>12}")
    for device in devices:
        base = None
        for name, b, opt in cases:
            if device == "cuda" and b < 64 and name.startswith("batched"):
                continue
            fps = frames_per_second(pieces, b, device, args.seconds, opt)
            base = base or fps
            print(f"{device:<6} {name:<44} {fps:>12,.0f} {fps / base:>11.1f}x", flush=True)
    if not torch.cuda.is_available():
        print("no gpu: torch sees no cuda device, so the gpu rows were not measured")
    torchrun_rows(args)


if __name__ == "__main__":
    main()
