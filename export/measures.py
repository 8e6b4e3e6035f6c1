"""The two measures of the paper's Table 1 for an RNN-RBM, frame by frame (rnnrbm-eval is evaluate.py).

LL: mean over all frames of log P(v_t | v_<t) = -F_t(v_t) - log Z_t in nats, with each
frame's RBM conditioned on the true history and log Z_t estimated by AIS (export/ais.py).
ACC: expected frame-level accuracy TP / (TP + FP + FN) in %, of samples of each frame's
RBM given the true history, averaged over samples, then over frames. The samples are the
AIS runs' own (importance-weighted): a Gibbs chain from silence does not reach the
distribution of a well-trained conditional RBM in any affordable number of steps (it sits
in the silent mode; on Nottingham valid, 2,000 steps from silence gave ACC 56, the AIS
runs and chains started at the previous frame both 64). The chain measure is kept beside
it as acc_chain: it is what the exported step function, which starts from silence, plays.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from rnnrbm_live.errors import UserError

from .ais import ais, default_chunk, free_energy
from .frames import frame_accuracy, frame_biases
from .model import RNNRBM
from .uniforms import BlockUniforms, Uniforms

_ACC_CHAINS_PER_CHUNK = 2 ** 16


# --- the frames and their conditional RBMs ------------------------------------------------


def ais_measures(W: torch.Tensor, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, *,
                 n_runs: int, n_temps: int, generator: torch.Generator,
                 progress: bool, first_chunk: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """From one set of AIS runs per frame: log P(v_t | v_<t) [N] (float64), the AIS
    standard error of each log Z_t, each frame's expected accuracy [N] under its RBM
    (weighted over the runs' samples) and the effective sample size of those weights."""
    with tqdm(total=len(v), desc="AIS", unit="frame", disable=not progress,
              dynamic_ncols=True, leave=False) as bar:
        lock = threading.Lock()  # chunks finish on several threads

        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def accuracy(rows: slice, samples: torch.Tensor) -> torch.Tensor:
            return frame_accuracy(samples, v[rows].repeat_interleave(n_runs, 0))[0]

        est = ais(W, bv, bh, n_runs=n_runs, n_temps=n_temps, generator=generator,
                  progress=advance, statistic=accuracy, first_chunk=first_chunk)
    neg_f = -free_energy(W.double(), v.double(), bv.double(), bh.double())
    return neg_f - est.log_z, est.se, est.mean, est.ess


@torch.no_grad()
def chain_accuracies(model: RNNRBM, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, *, samples: int,
                     gibbs: int, seed: int, chunk: int, first_chunk: int = 0, progress: bool) -> torch.Tensor:
    """Expected accuracy of each frame [N] over `samples` draws, each the end of a
    `gibbs`-step chain from silence: how the exported step function samples. Frames come
    in chunks of `chunk` (AIS's), each chunk with its own noise stream (numbered from
    `first_chunk`), so a shard of the split gets the numbers a whole run gives it."""
    chunks_per_group = max(1, _ACC_CHAINS_PER_CHUNK // (samples * chunk))
    per_group = chunks_per_group * chunk
    accs = []
    for start in tqdm(range(0, len(v), per_group), desc="ACC chains", unit="group",
                      disable=not progress, dynamic_ncols=True, leave=False):
        rows = slice(start, start + per_group)
        n = len(v[rows])
        blocks = [(slice(j * samples, min(j + chunk, n) * samples),
                   Uniforms(v.device, [seed, 1, first_chunk + (start + j) // chunk]))
                  for j in range(0, n, chunk)]
        bvr = bv[rows].repeat_interleave(samples, 0)
        bhr = bh[rows].repeat_interleave(samples, 0)
        drawn = model.gibbs_chain(torch.zeros_like(bvr), bvr, bhr, gibbs, BlockUniforms(blocks))
        acc = frame_accuracy(drawn, v[rows].repeat_interleave(samples, 0))[0]
        accs.append(acc.double().view(-1, samples).mean(1))
    return torch.cat(accs) if accs else torch.empty(0, dtype=torch.float64, device=v.device)


def sem(x: torch.Tensor) -> float:
    """The standard error of x's mean (nan for fewer than two values)."""
    return float(x.std() / math.sqrt(len(x))) if len(x) > 1 else math.nan


def _ais_generator(device: torch.device, seed: int) -> torch.Generator:
    # Its own stream, apart from the ACC samples' Uniforms(device, [seed, 1]).
    state = np.random.SeedSequence([seed, 0]).generate_state(1)[0]
    return torch.Generator(device).manual_seed(int(state))


@dataclass
class FrameResults:
    """Each frame's results, in the split's order, for the whole split or one shard of it."""

    ll: torch.Tensor                   # log P(v_t | v_<t) [n], float64
    logz_se: torch.Tensor              # AIS standard error of each log Z_t
    acc: torch.Tensor                  # expected accuracy under the frame's RBM (weighted AIS samples)
    ess: torch.Tensor                  # effective samples behind each acc
    chain: torch.Tensor | None         # accuracy of chains from silence (None: not measured)
    meta: dict = field(default_factory=dict)   # the settings and where the frames lie in the split
    played: torch.Tensor | None = None  # "ACC, played": accuracy of what the step draws (played.py)


def shard_frames(n_frames: int, chunk: int, shard: tuple[int, int]) -> tuple[int, int, int]:
    """Frames [first, end) of shard i of n (1-based) and its first chunk: whole AIS chunks,
    as evenly spread as chunks allow, so each frame gets the noise a whole run gives it."""
    i, n = shard
    chunks = math.ceil(n_frames / chunk)
    c0, c1 = (i - 1) * chunks // n, i * chunks // n
    return c0 * chunk, min(c1 * chunk, n_frames), c0


def frame_results(model: RNNRBM, sequences: list[np.ndarray], *, n_runs: int = 100, n_temps: int = 500,
                  acc_samples: int = 20, acc_gibbs: int | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", progress: bool = True,
                  shard: tuple[int, int] = (1, 1)) -> FrameResults:
    """Per-frame LL and ACC of `model` on `sequences` ([T, n_v] 0/1 arrays), for shard i of
    n of the frames (default: all). Same seed and device, same numbers for every frame,
    however the split is sharded. The model itself is left as it was."""
    device = torch.device(device)
    sequences = [s for s in sequences if len(s)]
    if not sequences:
        raise UserError("no frames to evaluate: the sequences are empty")
    n_v = model.config.n_visible
    odd = next((s for s in sequences if s.ndim != 2 or s.shape[1] != n_v), None)
    if odd is not None:
        raise UserError(f"the data has frames of shape {odd.shape[1:]}, the model takes {n_v} keys")
    if n_runs < 1 or n_temps < 1 or acc_samples < 0:
        raise UserError("runs and temperatures must each be at least 1, acc samples at least 0")
    gibbs = model.config.gibbs_steps if acc_gibbs is None else acc_gibbs
    if model.W.device.type != device.type or device.index not in (None, model.W.device.index):
        model = copy.deepcopy(model).to(device)  # the caller's model stays where it is
    device = model.W.device
    chunk = default_chunk(device, n_runs)
    with torch.no_grad():
        v, bv, bh = frame_biases(model, sequences)
        first, end, first_chunk = shard_frames(len(v), chunk, shard)
        if shard[1] > math.ceil(len(v) / chunk):
            raise UserError(f"--shard {shard[0]}/{shard[1]}: the split has only {math.ceil(len(v) / chunk)} "
                            f"chunks of {chunk} frames; use at most that many shards")
        v, bv, bh = v[first:end], bv[first:end], bh[first:end]
        ll, logz_se, acc, ess = ais_measures(model.W.detach(), v, bv, bh, n_runs=n_runs, n_temps=n_temps,
                                             generator=_ais_generator(device, seed), progress=progress,
                                             first_chunk=first_chunk)
        chain = None
        if acc_samples:
            chain = chain_accuracies(model, v, bv, bh, samples=acc_samples, gibbs=gibbs, seed=seed,
                                     chunk=chunk, first_chunk=first_chunk, progress=progress)
    meta = {"n_runs": n_runs, "n_temps": n_temps, "acc_samples": acc_samples, "acc_gibbs": gibbs,
            "seed": seed, "chunk": chunk, "device_type": device.type, "sequences": len(sequences),
            "total_frames": int(sum(len(s) for s in sequences)), "first_frame": first,
            "end_frame": end, "shard": list(shard)}
    return FrameResults(ll, logz_se, acc, ess, chain, meta)


def summarize(r: FrameResults) -> dict:
    """The split's numbers from its frames' results (evaluate's result, less seconds)."""
    m = r.meta
    return {
        "ll": float(r.ll.mean()), "ll_sem": sem(r.ll), "logz_sem_mean": float(r.logz_se.mean()),
        "acc": 100 * float(r.acc.mean()), "acc_sem": 100 * sem(r.acc),
        "acc_ess_median": float(r.ess.median()), "acc_ess_min": float(r.ess.min()),
        "acc_chain": None if r.chain is None else 100 * float(r.chain.mean()),
        "acc_chain_sem": None if r.chain is None else 100 * sem(r.chain),
        "frames": len(r.ll), "sequences": m["sequences"],
        "n_runs": m["n_runs"], "n_temps": m["n_temps"], "acc_samples": m["acc_samples"],
        "acc_gibbs": m["acc_gibbs"], "seed": m["seed"],
    }


def evaluate(model: RNNRBM, sequences: list[np.ndarray], *, n_runs: int = 100, n_temps: int = 500,
             acc_samples: int = 20, acc_gibbs: int | None = None, seed: int = 0,
             device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """LL (nats per frame) and ACC (%) of `model` on `sequences` ([T, n_v] 0/1 arrays).

    Returns ll, ll_sem (SEM over frames), logz_sem_mean (mean AIS standard error of
    log Z_t), acc and acc_sem (over the AIS runs' weighted samples), acc_ess_median and
    acc_ess_min (effective samples per frame), acc_chain and acc_chain_sem (acc_samples
    chains of acc_gibbs steps from silence per frame; acc_samples=0 skips them), frames,
    sequences, n_runs, n_temps, acc_samples, acc_gibbs, seed, seconds.
    Same seed and device, same result. The model itself is left as it was."""
    start = time.perf_counter()
    r = frame_results(model, sequences, n_runs=n_runs, n_temps=n_temps, acc_samples=acc_samples,
                      acc_gibbs=acc_gibbs, seed=seed, device=device, progress=progress)
    return {**summarize(r), "seconds": time.perf_counter() - start}
