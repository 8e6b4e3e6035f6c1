"""Speed of AIS on real JSB frames: frames per second and the time the whole JSB test
split (4,725 frames) would take, for a few settings; optionally, how annealing schedules
compare per temperature on a trained checkpoint.

    python scripts/bench_eval.py                      # a random 88x150 model
    python scripts/bench_eval.py --checkpoint runs/jsb --frames 100 --workers 1 2
    python scripts/bench_eval.py --checkpoint runs/jsb --schedules
    python scripts/bench_eval.py --checkpoint checkpoints/nottingham --samplers --data nottingham

--samplers: ACC on valid frames by the samplers that could draw from each frame's RBM:
Gibbs chains from silence (what the step graph does) and from the true previous frame,
for growing lengths, and the AIS runs' weighted samples (what rnnrbm-eval reports).
Chains from the two starts meet only where they have reached the RBM's distribution.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnnrbm_export.ais import ais, log_partition_ais  # noqa: E402
from rnnrbm_export.checkpoint import load_checkpoint  # noqa: E402
from rnnrbm_export.measures import frame_accuracy, frame_biases  # noqa: E402
from rnnrbm_export.model import RNNRBM, RNNRBMConfig  # noqa: E402
from rnnrbm_export.uniforms import Uniforms  # noqa: E402
from rnnrbm_live.midi.datasets import load_split  # noqa: E402

JSB_TEST_FRAMES = 4725


def model_from(checkpoint: str | None) -> RNNRBM:
    if checkpoint:
        return load_checkpoint(checkpoint)[0]
    torch.manual_seed(0)
    return RNNRBM(RNNRBMConfig(init_std=0.1, init_recurrent_std=0.1))


def jsb_frames(model: RNNRBM, n: int):
    v, bv, bh = frame_biases(model, load_split("jsb_chorales", "valid")[:40])
    return v[:n], bv[:n], bh[:n]


def speed_table(model: RNNRBM, n_frames: int, settings: list[str], workers: list[int]) -> None:
    _, bv, bh = jsb_frames(model, n_frames)
    print(f"{'runs':>5} {'temps':>6} {'workers':>7} {'frames':>6} {'seconds':>8} {'frames/s':>9} {'JSB test':>9}")
    for setting in settings:
        runs, temps = (int(x) for x in setting.split("x"))
        for w in workers:
            start = time.perf_counter()
            log_partition_ais(model.W.detach(), bv, bh, n_runs=runs, n_temps=temps, workers=w,
                              generator=torch.Generator().manual_seed(0))
            seconds = time.perf_counter() - start
            rate = len(bv) / seconds
            print(f"{runs:>5} {temps:>6} {w:>7} {len(bv):>6} {seconds:>8.2f} {rate:>9.1f} "
                  f"{JSB_TEST_FRAMES / rate / 60:>7.1f} min", flush=True)


def schedules(K: int) -> dict[str, list[float]]:
    t = np.linspace(0, 1, K + 1)
    # Salakhutdinov & Murray's 0-0.5-0.9-1 pieces with their 500:4000:10000 step counts.
    n1, n2 = round(K * 500 / 14500), round(K * 4000 / 14500)
    piecewise = np.concatenate([np.linspace(0, .5, n1 + 1)[:-1], np.linspace(.5, .9, n2 + 1)[:-1],
                                np.linspace(.9, 1, K - n1 - n2 + 1)])
    return {"linear": t, "denser near 1": 1 - (1 - t) ** 2, "denser near 0": t ** 2, "S&M pieces": piecewise}


def schedule_table(model: RNNRBM, n_frames: int, K: int) -> None:
    """Each schedule's mean AIS standard error and error against a long reference run."""
    _, bv, bh = jsb_frames(model, n_frames)
    for scale in (1.0, 3.0):  # as trained, and a sharper model
        W = model.W.detach() * scale
        ref, _ = log_partition_ais(W, bv, bh, n_runs=200, n_temps=10 * K, generator=torch.Generator().manual_seed(99))
        print(f"W x{scale:g}, {K} temperatures, 100 runs, {len(bv)} frames:")
        for name, betas in schedules(K).items():
            betas = [float(b) for b in betas]
            est, se = log_partition_ais(W, bv, bh, n_runs=100, betas=betas, generator=torch.Generator().manual_seed(1))
            err = est - ref
            print(f"  {name:14s} mean SE {float(se.mean()):.4f}   rms error {float(err.pow(2).mean().sqrt()):.4f}")


def sampler_table(model: RNNRBM, data: str, n_seqs: int, samples: int, lengths: list[int]) -> None:
    sequences = load_split(data, "valid")[:n_seqs]
    v, bv, bh = frame_biases(model, sequences)
    previous = torch.cat([torch.cat([torch.zeros(1, v.shape[1]), torch.from_numpy(s[:-1]).float()])
                          for s in sequences])
    target = v.repeat_interleave(samples, 0)
    bvr, bhr = bv.repeat_interleave(samples, 0), bh.repeat_interleave(samples, 0)
    print(f"{data} valid, first {n_seqs} sequences ({len(v)} frames), {samples} samples per frame")
    print(f"{'sampler':<42} {'ACC %':>7} {'notes':>6} {'seconds':>8}")
    for name, start in (("chain from silence", torch.zeros_like(v)), ("chain from the previous frame", previous)):
        x, done, uniforms = start.repeat_interleave(samples, 0), 0, Uniforms("cpu", 1)
        for k in lengths:
            t = time.perf_counter()
            with torch.no_grad():
                x = model.gibbs_chain(x, bvr, bhr, k - done, uniforms)
            done = k
            acc = 100 * float(frame_accuracy(x, target)[0].mean())
            print(f"{name + f', {k} steps':<42} {acc:>7.2f} {float(x.sum(1).mean()):>6.2f} "
                  f"{time.perf_counter() - t:>8.1f}", flush=True)
    t = time.perf_counter()
    est = ais(model.W.detach(), bv, bh, n_runs=100, n_temps=500, generator=torch.Generator().manual_seed(0),
              statistic=lambda rows, x: frame_accuracy(x, v[rows].repeat_interleave(100, 0))[0])
    print(f"{'AIS 100 x 500, weighted':<42} {100 * float(est.mean.mean()):>7.2f} {'':>6} "
          f"{time.perf_counter() - t:>8.1f}   (effective samples: median {float(est.ess.median()):.0f})")
    print(f"{'true frames':<42} {'':>7} {float(v.sum(1).mean()):>6.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a checkpoint or training folder (default: a random model)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--settings", nargs="+", default=["100x500", "10x100"], help="RUNSxTEMPERATURES")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--schedules", action="store_true", help="compare annealing schedules instead")
    p.add_argument("--temperatures", type=int, default=200, help="for --schedules")
    p.add_argument("--samplers", action="store_true", help="compare the samplers ACC could use instead")
    p.add_argument("--data", default="jsb_chorales", help="for --samplers: a bundled dataset")
    p.add_argument("--seqs", type=int, default=8, help="for --samplers: valid sequences")
    p.add_argument("--samples", type=int, default=10, help="for --samplers: chains per frame")
    p.add_argument("--lengths", type=int, nargs="+", default=[25, 200, 1000, 2000], help="for --samplers")
    a = p.parse_args()
    model = model_from(a.checkpoint)
    if a.samplers:
        sampler_table(model, a.data, a.seqs, a.samples, a.lengths)
    elif a.schedules:
        schedule_table(model, a.frames, a.temperatures)
    else:
        speed_table(model, a.frames, a.settings, a.workers)


if __name__ == "__main__":
    main()
