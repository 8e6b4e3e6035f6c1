"""How the v2 step draws a frame from its conditional RBM: the float32 torch reference of
docs/step-contract.md (format "rnnrbm-step/2"), batched over frames.

Two samplers, each with R chains and K sweeps per chain, reading noise [N, R, K + 1, n_h + n_v]:

"chain": one block-Gibbs chain (R = 1) of K sweeps h -> v at the frame's RBM, started from
  the previous frame v_{t-1} (start="previous") or from silence (start="silence", the v1
  step). Slot k (1..K) holds sweep k's hidden then visible draws; slot 0 is unused.
"sir": sampling-importance-resampling over R annealed chains. Each chain anneals from a
  base RBM with W = 0 (independent units, exact to sample) to the frame's RBM along
  RBM(beta W, base-to-frame visible bias, bh), beta = k / K, keeping its hidden state as
  export/ais.py does, and carries the AIS importance weight of its end state. The frame is
  the end of the chain picked with probability proportional to its weight (Gumbel-max).
  A chain's base has visible logits bv_t + lean_r (2 v_{t-1} - 1): lean 0 (the
  visible-bias-only RBM) for the first R - P chains, `lean` for the last P ("previous"
  chains, which start near the previous frame). Slot 0: hidden draws of the base state
  (its visible part is unused); slot k: sweep k's visible then hidden draws, except that
  slot K's hidden unit 0 (no sweep follows) is the Gumbel draw that picks the chain.
"guided": sampling-importance-resampling over R candidates drawn from a proposal of
  independent units whose logits a_t the step reads from u_{t-1} and v_{t-1}
  (export/proposal.py), each weighed by p(v) / q(v) (the frame RBM's unnormalised
  probability, its hidden units summed out, over the proposal's); the picked candidate
  then takes K Gibbs sweeps at the frame's RBM. Noise is one flat row per frame [N, S],
  S = R (n_v + 1) + K (n_h + n_v): candidate r's visible draws and its Gumbel draw, then
  sweep k's hidden and visible draws.

Every pre-activation is divided by the temperature T; held units keep their values in every
chain (the chains sample the RBM of the free units given the held ones, whose weights count
the held units exactly). Operations run in the ONNX graph's order so that onnxruntime agrees
with this reference but for float-rounding boundary cases (step_check.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from rnnrbm_live.model.card import guided_noise_size

KINDS = ("chain", "sir", "guided")
STARTS = ("silence", "previous")


@dataclass(frozen=True)
class Sampler:
    kind: str = "chain"  # "chain", "sir" or "guided"
    steps: int = 25  # K: Gibbs sweeps (chain, guided: after the pick) or annealing temperatures (sir)
    chains: int = 1  # R: chains (sir) or candidates (guided) per frame (chain: 1)
    start: str = "silence"  # chain: "silence" or "previous"
    previous: int = 0  # sir: P of the R chains lean toward v_{t-1}
    lean: float = 0.0  # sir: how far those chains' base leans; guided: the proposal's (logit units)
    spread: float = 1.0  # guided: the fitted proposal's logits are divided by this (wider: > 1)

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            problems.append(f"steps must be a positive integer, not {self.steps!r}")
        if not isinstance(self.chains, int) or self.chains < 1 or (self.kind == "chain" and self.chains != 1):
            problems.append(f"chains must be a positive integer (1 for a chain), not {self.chains!r}")
        if self.start not in STARTS or (self.kind != "chain" and self.start != "silence"):
            problems.append(f"start must be one of {', '.join(STARTS)} (silence for {self.kind}), not {self.start!r}")
        if not isinstance(self.previous, int) or not 0 <= self.previous <= self.chains or (
                self.kind != "sir" and self.previous):
            problems.append(f"previous must be 0..chains (0 for {self.kind}), not {self.previous!r}")
        if not isinstance(self.spread, (int, float)) or not self.spread > 0 or (
                self.kind != "guided" and self.spread != 1):
            problems.append(f"spread must be a positive number (1 but for guided), not {self.spread!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def uses_previous(self) -> bool:
        """Whether the step needs the previous frame as an input."""
        return self.start == "previous" or (self.previous > 0 and self.lean != 0) or self.kind == "guided"

    def leans(self) -> list[float]:
        """The base lean of each chain, in chain order."""
        return [0.0] * (self.chains - self.previous) + [float(self.lean)] * self.previous

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Sampler":
        return cls(**d)

    def label(self) -> str:
        if self.kind == "chain":
            return f"chain from {self.start}, K={self.steps}"
        if self.kind == "guided":
            spread = f", spread {self.spread:g}" if self.spread != 1 else ""
            return f"guided R={self.chains}, lean {self.lean:g}{spread}, then K={self.steps} sweeps"
        mix = f", {self.previous} leaning {self.lean:g} to v_prev" if self.previous else ""
        return f"sir R={self.chains} K={self.steps}{mix}"


# What rnnrbm-export writes unless told otherwise; chosen by scripts/bench_sampler.py (README).
DEFAULT_SAMPLER = Sampler("sir", 10, chains=4, previous=4, lean=2.5)
# rnnrbm-export --sampler guided's defaults (docs/sampling.md).
GUIDED = Sampler("guided", 1, chains=128, lean=0.0)


def noise_shape(sampler: Sampler, n_hidden: int, n_visible: int) -> tuple[int, ...]:
    """Per frame: [R, K + 1, n_h + n_v] (chain, sir) or [R (n_v + 1) + K (n_h + n_v)] (guided)."""
    if sampler.kind == "guided":
        return (guided_noise_size(n_visible, n_hidden, sampler.steps, sampler.chains),)
    return sampler.chains, sampler.steps + 1, n_hidden + n_visible


class Probe:
    """Records, per row of a draw, how close it came to a float-rounding boundary: the
    smallest |noise - probability| over the sampled units, and for "sir" the gap between
    the two best Gumbel-perturbed weights (step_check.py, run in float64)."""

    def __init__(self, rows: int, chains: int) -> None:
        self.chains = chains
        self.unit = torch.full((rows * chains,), float("inf"), dtype=torch.float64)
        self.pick = torch.full((rows,), float("inf"), dtype=torch.float64)

    def compare(self, noise: torch.Tensor, p: torch.Tensor, free: torch.Tensor | None) -> None:
        gap = (noise - p).abs()
        if free is not None:
            gap = torch.where(free > 0, gap, torch.inf)
        closest = gap.amin(1).double()
        if len(closest) != len(self.unit):  # a guided sampler's sweeps: one row per frame
            closest = closest.repeat_interleave(self.chains)
        self.unit = torch.minimum(self.unit, closest)

    def scores(self, score: torch.Tensor) -> None:
        top = score.topk(2, dim=1).values if score.shape[1] > 1 else score.new_full((len(score), 2), torch.inf)
        self.pick = (top[:, 0] - top[:, 1]).abs().double()

    def units(self) -> torch.Tensor:
        return self.unit.view(-1, self.chains).amin(1)


def _less(noise: torch.Tensor, p: torch.Tensor, probe: Probe | None, free: torch.Tensor | None = None):
    if probe is not None:
        probe.compare(noise, p, free)
    return (noise < p).to(p.dtype)


@torch.no_grad()
def draw(sampler: Sampler, W: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, v_prev: torch.Tensor,
         noise: torch.Tensor, clamp_mask: torch.Tensor, clamp_value: torch.Tensor,
         temperature: torch.Tensor, probe: Probe | None = None, proposal: torch.Tensor | None = None) -> torch.Tensor:
    """One frame per row [N, n_v] (0/1) from the RBMs (W, bv [N, n_v], bh [N, n_h]); in
    the dtype of the inputs (float32: the reference; float64: with a Probe, for the check).
    "guided" needs `proposal`, the proposal's logits a_t [N, n_v]."""
    held = clamp_mask * clamp_value
    free = 1 - clamp_mask
    if sampler.kind == "chain":
        start = held + free * v_prev if sampler.start == "previous" else held
        return _gibbs(W, bv, bh, start, noise[:, 0], held, free, temperature, probe)
    if sampler.kind == "guided":
        if proposal is None:
            raise ValueError("the guided sampler needs the proposal's logits")
        return _guided(sampler, W, bv, bh, proposal, noise, held, free, temperature, probe)
    return _sir(sampler, W, bv, bh, v_prev, noise, held, free, temperature, probe)


def _gibbs(W, bv, bh, v, noise, held, free, T, probe):
    """K sweeps v -> h -> v; noise [N, K + 1, n_h + n_v], slot 0 unused."""
    nh = bh.shape[1]
    for k in range(1, noise.shape[1]):
        h = _less(noise[:, k, :nh], torch.sigmoid((v @ W + bh) / T), probe)
        v = _less(noise[:, k, nh:], torch.sigmoid((h @ W.T + bv) / T), probe, free)
        v = held + free * v
    return v


def _sir(sampler: Sampler, W, bv, bh, v_prev, noise, held, free, T, probe):
    """R annealed chains per row, rows of chain r of frame i at i * R + r; one picked per frame."""
    n, r_chains, slots, _ = noise.shape
    nh, K = bh.shape[1], slots - 1
    rep = lambda x: x.repeat_interleave(r_chains, 0)  # noqa: E731
    bv, bh, v_prev, held, free, T = map(rep, (bv, bh, v_prev, held, free, T))
    noise = noise.reshape(n * r_chains, slots, -1)
    lean = torch.tensor(sampler.leans(), dtype=bv.dtype, device=bv.device).repeat(n)[:, None]
    base = bv + free * (lean * (2 * v_prev - 1))  # visible logits of each chain's base RBM
    toward = bv - base  # the base-to-frame part of the visible bias, scaled by beta
    h = _less(noise[:, 0, :nh], torch.sigmoid(bh / T), probe)  # exact draw of the base's hidden layer
    log_w = _log_g(base / T, held, free)  # log Z of the base, up to what all chains share
    for k in range(1, K + 1):
        b0, b1 = (k - 1) / K, k / K
        y = h @ W.T
        a1 = (base + b1 * (toward + y)) / T
        a0 = (base + b0 * (toward + y)) / T
        log_w = log_w + (_log_g(a1, held, free) - _log_g(a0, held, free))
        v = held + free * _less(noise[:, k, nh:], torch.sigmoid(a1), probe, free)
        if k < K:
            h = _less(noise[:, k, :nh], torch.sigmoid((b1 * (v @ W) + bh) / T), probe)
    gumbel = -torch.log(-torch.log(noise[:, K, 0]))
    score = (log_w + gumbel).view(n, r_chains)
    if probe is not None:
        probe.scores(score)
    pick = score.argmax(1)
    return v.view(n, r_chains, -1)[torch.arange(n), pick]


def _log_g(a: torch.Tensor, held: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """The visible units summed out of exp(v . a) given the held ones: softplus(a) over the
    free units plus a over the units held on (h's own term h.bh is the same at every beta)."""
    return (free * torch.nn.functional.softplus(a) + held * a).sum(-1)


def _guided(sampler: Sampler, W, bv, bh, a, noise, held, free, T, probe):
    """R candidates per row from the proposal, one picked by p(v)/q(v) with Gumbel-max, then
    K sweeps. log p(v)/q(v) = v.(bv - free a)/T + sum softplus((v W + bh)/T) + what all the
    candidates of a frame share (the proposal's log normaliser), which the pick ignores."""
    n, nv = bv.shape
    nh, r = bh.shape[1], sampler.chains
    drawn = noise[:, :r * (nv + 1)].reshape(n * r, nv + 1)
    rep = lambda x: x.repeat_interleave(r, 0)  # noqa: E731  row i * R + r: frame i's candidate r
    held_r, free_r, T_r = rep(held), rep(free), rep(T)
    x = held_r + free_r * _less(drawn[:, :nv], torch.sigmoid(rep(a) / T_r), probe, free_r)
    linear = (x * rep(bv - free * a)).sum(-1) / T_r[:, 0]
    log_w = linear + softplus_sum((x @ W + rep(bh)) / T_r)
    gumbel = -torch.log(-torch.log(drawn[:, nv]))
    score = (log_w + gumbel).view(n, r)
    if probe is not None:
        probe.scores(score)
    v = x.view(n, r, nv)[torch.arange(n), score.argmax(1)]
    sweeps = noise[:, r * (nv + 1):].reshape(n, sampler.steps, nh + nv)
    return _gibbs(W, bv, bh, v, torch.nn.functional.pad(sweeps, (0, 0, 1, 0)), held, free, T, probe)


def softplus_group(n: int) -> int:
    """How many units share one log in softplus_sum: the largest divisor of n up to 10."""
    return max(d for d in range(1, 11) if n % d == 0)


def softplus_sum(x: torch.Tensor) -> torch.Tensor:
    """sum_j softplus(x_j) over the last axis, as relu(x) + log(1 + exp(-|x|)) with one log
    per group of units (a product of at most 10 factors in (1, 2] cannot overflow):
    onnxruntime's Softplus and Log are scalar loops, and this is the candidates' main cost."""
    group = softplus_group(x.shape[-1])
    factors = (torch.exp(-x.abs()) + 1).view(*x.shape[:-1], -1, group).prod(-1)
    return torch.relu(x).sum(-1) + torch.log(factors).sum(-1)
