"""A second estimate of each frame's own measures, beside AIS: importance sampling from the
guided sampler's proposal (export/proposal.py).

On a sharp model AIS with few temperatures understates the model's own ACC: on the
bundled Nottingham model (every 64th valid frame) its weighted samples read 61.7, 63.2 and
64.1 with 200, 1,000 and 4,000 temperatures, still climbing. The fitted proposal already
sits near each frame's modes, so plain importance sampling from it, with enough
candidates, settles where AIS has not. One proposal can miss a mode the RBM has (a
chord change the data rarely shows after this history), and a self-normalised estimate
cannot see what it never draws; so the candidates come from a mixture of the proposal
at several spreads (the balance heuristic: every candidate is weighed against the
mixture's density), and a mode any component reaches is counted.

Per frame this gives log Z (the RBM's partition function, hidden units summed out), the
expected accuracy of the frame's own samples against the true frame, and the effective
sample size of the weights (small: do not trust that frame's numbers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .ais import free_energy
from .frames import frame_accuracy, frame_inputs, previous_frames
from .model import RNNRBM
from .proposal import Proposal
from .sampler import softplus_sum

_CANDIDATE_ROWS = 2 ** 16  # candidates in memory at once (rows of [*, n_v] and [*, n_h])


SPREADS = (1.0, 2.25)  # the mixture's components: the fit, and a wide one for the modes the data rarely shows


@torch.no_grad()
def split_measures(model: RNNRBM, sequences: list, proposal: Proposal, *, temperature: float = 1.0,
                   candidates: int = 65536, every: int = 1, spreads: tuple[float, ...] = SPREADS,
                   seed: int = 0, progress: bool = False) -> dict[str, torch.Tensor]:
    """LL log P(v_t | v_<t), expected accuracy and effective sample size [N] (float64) of
    every `every`-th frame of the sequences, by importance sampling, for the model sampled
    at `temperature`. The proposal (fitted to the untempered model's histories: the RNN
    reads the same ones at every temperature) is mixed at `spreads` and, below temperature 1,
    also sharpened by it, so the candidates still reach the sharper RBMs' modes."""
    m = model.tempered(temperature) if temperature != 1 else model
    v, u_prev, bv, bh = frame_inputs(m, sequences)
    rows = torch.arange(0, len(v), every)
    v, u_prev, bv, bh = v[rows], u_prev[rows], bv[rows], bh[rows]
    prev = previous_frames(sequences)[rows].to(v.device)
    logits = [proposal.shaped(spread=s).logits(u_prev, prev) for s in spreads]
    if temperature < 1:
        logits.append(proposal.logits(u_prev, prev) / temperature)
    log_z, acc, ess = proposal_measures(m.W.detach(), v, bv, bh, logits, candidates=candidates,
                                        generator=torch.Generator(v.device).manual_seed(seed), progress=progress)
    log_p = -free_energy(m.W.double(), v.double(), bv.double(), bh.double()) - log_z
    return {"ll": log_p, "acc": acc, "ess": ess, "frames": rows}


@torch.no_grad()
def proposal_measures(W: torch.Tensor, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor,
                      logits: list[torch.Tensor], *, candidates: int,
                      generator: torch.Generator, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each frame v [N, n_v] of the RBMs (W, bv [N, n_v], bh [N, n_h]): (log Z [N],
    expected accuracy [N], effective sample size [N]), all float64, from `candidates`
    draws per frame split evenly over the mixture's components (each a proposal's logits
    [N, n_v])."""
    parts = len(logits)
    per_part = max(1, candidates // parts)
    chunk = max(1, _CANDIDATE_ROWS // (per_part * parts))
    out = [[], [], []]
    for start in tqdm(range(0, len(v), chunk), desc="importance sampling", unit="chunk", disable=not progress,
                      dynamic_ncols=True, leave=False):
        rows = slice(start, start + chunk)
        results = _frames(W, v[rows], bv[rows], bh[rows], [a[rows] for a in logits], per_part, generator)
        for o, r in zip(out, results):
            o.append(r)
    return tuple(torch.cat(o) for o in out)


def _frames(W, v, bv, bh, logits, per_part, generator):
    n, nv = v.shape
    x = torch.cat([(torch.rand(n, per_part, nv, generator=generator, device=v.device) < torch.sigmoid(a)[:, None])
                   for a in logits], 1).to(W.dtype)  # [n, R, n_v]
    log_p = (x * bv[:, None]).sum(-1) + softplus_sum(x @ W + bh[:, None])  # unnormalised, hidden units summed out
    log_q = torch.stack([(x * a[:, None]).sum(-1) - F.softplus(a).sum(-1, keepdim=True) for a in logits])
    log_mix = torch.logsumexp(log_q, 0) - math.log(len(logits))
    log_w = (log_p - log_mix).double()
    log_z = torch.logsumexp(log_w, 1) - math.log(log_w.shape[1])
    w = torch.softmax(log_w, 1)
    acc = frame_accuracy(x, v[:, None].expand_as(x))[0].double()
    return log_z, (w * acc).sum(1), 1 / (w ** 2).sum(1)
