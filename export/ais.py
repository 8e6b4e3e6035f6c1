"""Partition functions of many RBMs that share W but have their own biases: annealed
importance sampling (Salakhutdinov & Murray, ICML 2008) for real models, exact
enumeration for tiny ones (and for the tests).

An RBM here is E(v, h) = -v.bv - h.bh - v W h with W [n_v, n_h]; the RNN-RBM has one
such RBM per frame, all with the same W and biases bv_t, bh_t.

The annealing path is p_beta = RBM(beta W, bv, bh), beta from 0 to 1: at beta = 0 it is
the RBM with W = 0, i.e. independent Bernoullis with the frame's own biases, whose log Z
is known in closed form (this keeps bh out of every weight increment). Transitions are
block Gibbs sweeps h -> v -> h of RBM(beta_k W, bv, bh), which leave p_beta_k invariant.
The chains keep the hidden state h, and the importance weights sum the visible units out
analytically,

    log g_beta(h) = h.bh + sum_i softplus(bv_i + beta (W h)_i),

rather than summing out the hidden units as S&M do. Both marginals give unbiased
estimates of Z along the same path with the same kernel; this one costs two softplus
passes over n_v = 88 units per temperature instead of over n_h = 150.

The same runs also sample the RBM itself: a visible state drawn from each run's last
hidden state is an importance sample of p(v) with the run's weight, so the
self-normalised weighted mean of any f(v) estimates E_p[f(v)] (consistent in the number
of runs; its effective sample size is reported). Unlike a Gibbs chain from a fixed start,
the annealed runs cross between the modes of a multimodal RBM: they begin at beta = 0,
where every unit is independent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .uniforms import Uniforms

MAX_EXACT_STATES = 2 ** 20
_CPU_CHAINS_PER_CHUNK = 2048  # ~2 MB of uniforms per temperature: stays in cache
_GPU_CHAINS_PER_CHUNK = 2 ** 19  # ~1.5 GB of buffers: enough to fill a large GPU
_ENUMERATION_BLOCK = 2 ** 22  # states x RBMs x units per block of the exact sum


# --- the easy parts ---------------------------------------------------------------------


def free_energy(W: Tensor, v: Tensor, bv: Tensor, bh: Tensor) -> Tensor:
    """F(v) = -v.bv - sum_j softplus((v W + bh)_j), so that p(v) = exp(-F(v)) / Z."""
    return -(v * bv).sum(-1) - F.softplus(v @ W + bh).sum(-1)


def annealing_schedule(n_temps: int) -> list[float]:
    """The n_temps + 1 inverse temperatures 0 = beta_0 < ... < beta_K = 1.

    Linear in beta. On the conditional RBMs of JSB valid frames under a (briefly) trained
    checkpoint, linear gave the smallest AIS standard error per temperature of the
    schedules tried (scripts/bench_eval.py --schedules; 200 temperatures, 100 runs): mean
    SE 0.029 nats against 0.033 for 1-(1-t)^2 (denser near 1), 0.033 for t^2 (denser
    near 0) and 0.079 for S&M's 0-0.5-0.9-1 pieces; with W tripled, 0.135 against 0.159,
    0.154 and 0.359."""
    if n_temps < 1:
        raise ValueError(f"n_temps must be at least 1, not {n_temps}")
    return [k / n_temps for k in range(n_temps + 1)]


def log_partition_exact(W: Tensor, bv: Tensor, bh: Tensor, *, over: str | None = None) -> Tensor:
    """log Z [N] of each RBM (W shared, bv [N, n_v], bh [N, n_h]) by summing over every
    state of one layer (the smaller one unless `over` is "hidden" or "visible"), in float64."""
    n_v, n_h = W.shape
    over = over or ("hidden" if n_h <= n_v else "visible")
    if over not in ("hidden", "visible"):
        raise ValueError(f"over must be 'hidden' or 'visible', not {over!r}")
    # Summing over h leaves softplus terms over v, and the other way round.
    W64, bv64, bh64 = W.double(), bv.double(), bh.double()
    if over == "visible":
        W64, bv64, bh64 = W64.T, bh64, bv64
    n_states = 2 ** W64.shape[1]
    if n_states > MAX_EXACT_STATES:
        raise ValueError(f"exact log Z would enumerate 2^{W64.shape[1]} states (limit 2^20); use AIS")
    bits = torch.arange(W64.shape[1], device=W.device)
    block = max(1, _ENUMERATION_BLOCK // (max(1, bv64.shape[0]) * W64.shape[0]))
    parts = []
    for start in range(0, n_states, block):
        codes = torch.arange(start, min(start + block, n_states), device=W.device)
        s = ((codes[:, None] >> bits) & 1).double()  # [B, n_summed]
        log_g = bh64 @ s.T + F.softplus(bv64[:, None, :] + (s @ W64.T)[None]).sum(-1)  # [N, B]
        parts.append(torch.logsumexp(log_g, dim=1))
    return torch.logsumexp(torch.stack(parts, dim=1), dim=1)


# --- seeds ----------------------------------------------------------------------------------


def _seed_from(generator: torch.Generator | None, device: torch.device) -> int:
    """One draw from the caller's generator seeds every chunk's own noise stream
    (Uniforms(device, [seed, chunk index])): numpy's PCG64 on a CPU, about twice
    torch.rand's speed, and the result does not depend on which thread ran which chunk."""
    where = generator.device if generator is not None else device
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=where).item())


# --- AIS ------------------------------------------------------------------------------------


@torch.no_grad()
def _ais_log_weights(W: Tensor, WT: Tensor, bv: Tensor, bh: Tensor, n_runs: int,
                     betas: Sequence[float], uniforms: Uniforms,
                     statistic: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
    """log importance weights [n, n_runs] (float64) of n_runs chains per RBM; the caller
    adds log Z_0. Chains of RBM i are rows i*n_runs ... (i+1)*n_runs - 1. With a
    statistic, also its value [n, n_runs] at a visible sample drawn from each run's end."""
    n_v, n_h = W.shape
    M = bv.shape[0] * n_runs
    bvr = bv.float().repeat_interleave(n_runs, 0)
    bhr = bh.float().repeat_interleave(n_runs, 0)
    softplus_ = _softplus_inplace if _exp_cannot_overflow(W, bv) else _softplus_safe
    u = torch.empty(M, n_h + n_v, device=W.device)
    uh, uv = u[:, :n_h], u[:, n_h:]
    y, pre = torch.empty(M, n_v, device=W.device), torch.empty(M, n_h, device=W.device)
    a0, a1, p1 = torch.empty_like(y), torch.empty_like(y), torch.empty_like(y)
    log_w = torch.zeros(M, dtype=torch.float64, device=W.device)

    uniforms.fill(u)
    h = uh.lt_(torch.sigmoid(bhr))  # exact sample of the beta = 0 RBM's hidden layer
    K = len(betas) - 1
    for k in range(1, K + 1):
        b0, b1 = betas[k - 1], betas[k]
        torch.mm(h, WT, out=y)
        torch.add(bvr, y, alpha=b0, out=a0)
        torch.add(bvr, y, alpha=b1, out=a1)
        torch.sigmoid(a1, out=p1)
        # log g_b1(h) - log g_b0(h): the h.bh terms cancel; float32 per step is plenty
        # (increments are small), the running sum is float64.
        log_w += softplus_(a1).sub_(softplus_(a0)).sum(-1)
        if k == K:
            break
        # One Gibbs sweep h -> v -> h of RBM(b1 W, bv, bh), which leaves p_b1(h) invariant.
        # Comparing in place turns the uniforms into the 0/1 states: no new tensors.
        uniforms.fill(u)
        v = uv.lt_(p1)
        torch.addmm(bhr, v, W, alpha=b1, out=pre)
        h = uh.lt_(pre.sigmoid_())
    values = None
    if statistic is not None:
        # p1 is p(v = 1 | h) at beta = 1 here: v completes the run's importance sample.
        v = uniforms.fill(u)[:, n_h:].lt_(p1)
        values = statistic(v).double().view(-1, n_runs)
    return log_w.view(-1, n_runs), values


def _exp_cannot_overflow(W: Tensor, bv: Tensor) -> bool:
    """Whether exp(bv_i + beta (W h)_i) stays finite for every h in {0,1}^n_h, beta in
    [0, 1]: then softplus can be log(1 + exp(x)), three cheap passes where torch's
    softplus is one slow one (it was a third of the AIS time)."""
    top = bv.float().max(dim=0).values + W.clamp(min=0).sum(dim=1)
    return bool(top.max() < 80)  # float32 exp overflows past 88.7


def _softplus_inplace(x: Tensor) -> Tensor:
    return x.exp_().add_(1).log_()


def _softplus_safe(x: Tensor) -> Tensor:
    return F.softplus(x)


def _log_z0(bv: Tensor, bh: Tensor) -> Tensor:
    """log Z of the W = 0 RBM: every unit is an independent Bernoulli."""
    return F.softplus(bv.double()).sum(-1) + F.softplus(bh.double()).sum(-1)


def _summarize(log_w: Tensor) -> tuple[Tensor, Tensor]:
    """log mean exp of each row, and its standard error by the delta method,
    std(w) / mean(w) / sqrt(runs) (NaN with a single run)."""
    top = log_w.max(dim=1, keepdim=True).values
    w = (log_w - top).exp()
    mean = w.mean(dim=1)
    se = w.std(dim=1) / mean / math.sqrt(log_w.shape[1]) if log_w.shape[1] > 1 else torch.full_like(mean, math.nan)
    return top[:, 0] + mean.log(), se


@contextmanager
def _restoring_torch_threads():
    """The workers below run torch ops on one core each: two threads with one core each
    keep working when another process takes a core, where an OpenMP team stalls at every
    barrier. ATen keeps the count per thread, but also in a global that new threads copy:
    put that back for the caller afterwards."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class AISEstimate:
    log_z: Tensor  # [N] log mean exp of the runs' weights, plus log Z_0 (float64)
    se: Tensor  # [N] standard error of each log Z across the runs (delta method)
    mean: Tensor | None = None  # [N] self-normalised weighted mean of the statistic
    ess: Tensor | None = None  # [N] effective sample size of the weights, 1 .. n_runs


def default_chunk(device: torch.device, n_runs: int) -> int:
    """RBMs per batch of chains: ~2k chains on a CPU (they stay in cache), ~500k on a GPU."""
    return max(1, (_CPU_CHAINS_PER_CHUNK if device.type == "cpu" else _GPU_CHAINS_PER_CHUNK) // n_runs)


def log_partition_ais(W: Tensor, bv: Tensor, bh: Tensor, **options) -> tuple[Tensor, Tensor]:
    """AIS estimates of log Z [N] and their standard errors [N]: ais() without a statistic."""
    est = ais(W, bv, bh, **options)
    return est.log_z, est.se


def ais(W: Tensor, bv: Tensor, bh: Tensor, *, n_runs: int = 100, n_temps: int = 500,
        generator: torch.Generator | None = None, chunk: int | None = None,
        workers: int | None = None, betas: Sequence[float] | None = None,
        progress: Callable[[int], None] | None = None,
        statistic: Callable[[slice, Tensor], Tensor] | None = None,
        first_chunk: int = 0) -> AISEstimate:
    """AIS for N RBMs sharing W [n_v, n_h] with biases bv [N, n_v], bh [N, n_h]: log Z of
    each, its standard error across the n_runs runs, and optionally E_p[f(v)] per RBM.

    The log Z estimate is log mean exp of the runs' importance weights (unbiased in Z, so
    slightly low in log Z on average). Runs on W's device in float32 with float64 weights.
    chunk: RBMs per batch of chains (default: ~2k chains on a CPU, ~500k on a GPU).
    workers: CPU threads, each running its chunks on one core (default
      torch.get_num_threads(); the caller's thread count is restored after).
    betas: a custom schedule from 0 to 1 (default annealing_schedule(n_temps)).
    progress: called with the number of RBMs each finished chunk held.
    statistic(rows, v): f of visible samples v [len(rows) * n_runs, n_v] (the runs of RBM
      rows.start + i are rows i * n_runs ... of v), one value per sample; fills mean and ess.
    first_chunk: the index of the first chunk's noise stream, so that a part of a larger
      set of RBMs that starts on a chunk boundary gets exactly the noise it would get there.
    Same generator state, same chunk: same result, whatever the workers."""
    device = W.device
    N = bv.shape[0]
    betas = list(annealing_schedule(n_temps) if betas is None else betas)
    if betas[0] != 0 or betas[-1] != 1 or len(betas) < 2:
        raise ValueError("betas must run from 0 to 1")
    if n_runs < 1:
        raise ValueError(f"n_runs must be at least 1, not {n_runs}")
    cpu = device.type == "cpu"
    workers = max(1, workers or torch.get_num_threads()) if cpu else 1
    chunk = chunk or default_chunk(device, n_runs)
    seed = _seed_from(generator, device)
    W = W.detach().float()
    WT = W.T.contiguous()
    bv, bh = bv.detach().to(device), bh.detach().to(device)

    def job(index: int) -> tuple[Tensor, Tensor | None]:
        if cpu:
            torch.set_num_threads(1)
        rows = slice(index * chunk, min((index + 1) * chunk, N))
        uniforms = Uniforms(device, [seed, first_chunk + index])
        f = None if statistic is None else (lambda v: statistic(rows, v))
        log_w, values = _ais_log_weights(W, WT, bv[rows], bh[rows], n_runs, betas, uniforms, f)
        if progress is not None:
            progress(log_w.shape[0])
        return log_w, values

    n_chunks = math.ceil(N / chunk)
    if n_chunks == 0:
        empty = torch.empty(0, dtype=torch.float64, device=device)
        est = AISEstimate(empty, empty.clone())
        if statistic is not None:
            est.mean, est.ess = empty.clone(), empty.clone()
        return est
    if cpu:
        with _restoring_torch_threads(), ThreadPoolExecutor(min(workers, n_chunks)) as pool:
            parts = list(pool.map(job, range(n_chunks)))
    else:
        parts = [job(i) for i in range(n_chunks)]
    log_w = torch.cat([p[0] for p in parts])
    log_mean_w, se = _summarize(log_w)
    est = AISEstimate(_log_z0(bv, bh) + log_mean_w, se)
    if statistic is not None:
        weights = torch.softmax(log_w, dim=1)
        est.mean = (weights * torch.cat([p[1] for p in parts])).sum(1)
        est.ess = 1 / weights.square().sum(1)
    return est
