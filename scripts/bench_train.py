"""Training throughput of the RNN-RBM (CD-15, default sizes), frames per second.

The tutorial's loop (SGD, one 100-frame chunk of one sequence per update) beside batched
updates (many chunks at once, padded), on the CPU and, when torch sees one, the GPU.
Run: python scripts/bench_train.py [--seconds 10] [--data nottingham]"""

from __future__ import annotations

import argparse
import time

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="nottingham")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seq-len", type=int, default=100)
    args = p.parse_args()
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
            print(f"{device:<6} {name:<34} {fps:>12,.0f} {fps / base:>11.1f}x", flush=True)
    if not torch.cuda.is_available():
        print("no gpu: torch sees no cuda device, so the gpu rows were not measured")


if __name__ == "__main__":
    main()
