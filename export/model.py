"""The RNN-RBM (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012) in one file.

An RNN with state u_t sets the biases of a conditional RBM at every time step:

    bv_t = bv + u_{t-1} Wuv        bh_t = bh + u_{t-1} Wuh
    u_t  = tanh(bu + v_t Wvu + u_{t-1} Wuu)

Parameter names and shapes are those of ../shared/docs/step-contract.md (and of the
original deeplearning.net tutorial), so a state_dict *is* the exported weights file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .sampler import Sampler, draw
from .uniforms import Uniforms

CONTRACT_PARAMETERS = ("W", "bv", "bh", "Wuh", "Wuv", "Wvu", "Wuu", "bu", "u0")


@dataclass
class RNNRBMConfig:
    n_visible: int = 88  # visible units: piano keys MIDI 21..108
    n_hidden: int = 150  # hidden units of each conditional RBM (tutorial: 150)
    n_recurrent: int = 100  # RNN state units (tutorial: 100)
    cd_k: int = 15  # Gibbs steps of the CD negative phase in training (tutorial: 15)
    gibbs_steps: int = 25  # Gibbs steps per generated frame; the exported K (tutorial: 25)
    learn_u0: bool = False  # learn the initial state u0 (the tutorial keeps it at zero)
    init_std: float = 0.01  # std of the initial RBM weights W (tutorial: 0.01)
    init_recurrent_std: float = 1e-4  # std of Wuh, Wuv, Wvu, Wuu at init (tutorial: 1e-4)
    lowest_pitch: int = 21  # MIDI note of visible unit 0
    frames_per_beat: int = 2  # grid of the training data: 2 = eighth notes, 1 = quarters
    dataset: str = ""  # what it was trained on (a bundled name or a folder)
    transposed_to: str = "C major/minor"  # key normalisation of the training data

    @classmethod
    def from_dict(cls, d: dict) -> "RNNRBMConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


class RNNRBM(nn.Module):
    def __init__(self, config: RNNRBMConfig):
        super().__init__()
        self.config = config
        nv, nh, nu = config.n_visible, config.n_hidden, config.n_recurrent
        r = config.init_recurrent_std
        self.W = nn.Parameter(torch.randn(nv, nh) * config.init_std)
        self.bv = nn.Parameter(torch.zeros(nv))
        self.bh = nn.Parameter(torch.zeros(nh))
        self.Wuh = nn.Parameter(torch.randn(nu, nh) * r)
        self.Wuv = nn.Parameter(torch.randn(nu, nv) * r)
        self.Wvu = nn.Parameter(torch.randn(nv, nu) * r)
        self.Wuu = nn.Parameter(torch.randn(nu, nu) * r)
        self.bu = nn.Parameter(torch.zeros(nu))
        self.u0 = nn.Parameter(torch.zeros(nu), requires_grad=config.learn_u0)
        # The guided sampler's proposal (export/proposal.py): fitted after training, not trained with the model.
        self.proposal = None

    # --- the recurrent part -------------------------------------------------------------

    def previous_states(self, v: torch.Tensor) -> torch.Tensor:
        """u_{t-1} for every frame of v [B, T, n_v] given the true history: [B, T, n_u]."""
        B, T, _ = v.shape
        drive = self.bu + v @ self.Wvu  # the input part of every step, in one matmul
        u = self.u0.expand(B, -1)
        states = []
        for t in range(T):
            states.append(u)
            u = torch.tanh(drive[:, t] + u @ self.Wuu)
        return torch.stack(states, dim=1)

    def conditional_biases(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The biases bv_t [B, T, n_v] and bh_t [B, T, n_h] of each frame's RBM."""
        return self.biases(self.previous_states(v))

    def biases(self, u_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """bv_t and bh_t of the RBMs whose previous recurrent states are u_prev [..., n_u]."""
        return self.bv + u_prev @ self.Wuv, self.bh + u_prev @ self.Wuh

    # --- the RBM part ---------------------------------------------------------------------

    def free_energy(self, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor) -> torch.Tensor:
        """F(v) = -v.bv - sum_j softplus((v W + bh)_j), per frame."""
        return -(v * bv).sum(-1) - F.softplus(v @ self.W + bh).sum(-1)

    @torch.no_grad()
    def gibbs_chain(self, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, k: int,
                    uniforms: Uniforms | None = None) -> torch.Tensor:
        """k steps of block Gibbs sampling v -> h -> v from v, with per-frame biases."""
        uniforms = uniforms or Uniforms(v.device, int(torch.randint(2 ** 62, (1,))))
        W, WT = self.W, self.W.T.contiguous()  # a contiguous W^T makes h W^T 3x faster
        uh = v.new_empty(bh.shape)
        uv = v.new_empty(bv.shape)
        for _ in range(k):
            # Comparing the noise in place turns it into the 0/1 sample: no new tensors.
            h = uniforms.fill(uh).lt_(torch.sigmoid_(v @ W + bh))
            v = uniforms.fill(uv).lt_(torch.sigmoid_(h @ WT + bv))
        return v

    def cd_loss(self, v: torch.Tensor, mask: torch.Tensor, k: int | None = None,
                uniforms: Uniforms | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The CD-k cost of a padded batch v [B, T, n_v] with mask [B, T].

        Its gradient is the CD-k estimate of the negative log-likelihood gradient: the
        negative samples are held constant and the gradient flows through bv_t and bh_t
        into the RNN (BPTT), as in the tutorial. Also returns the mean reconstruction
        cross-entropy of the chain's last mean field, the tutorial's monitor."""
        k = self.config.cd_k if k is None else k
        bv, bh = self.conditional_biases(v)
        v_neg = self.gibbs_chain(v, bv.detach(), bh.detach(), k, uniforms)
        n = mask.sum().clamp_min(1)
        cost = ((self.free_energy(v, bv, bh) - self.free_energy(v_neg, bv, bh)) * mask).sum() / n
        with torch.no_grad():
            logits = torch.sigmoid(v_neg @ self.W + bh) @ self.W.T + bv
            xent = F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(-1)
            monitor = (xent * mask).sum() / n
        return cost, monitor

    def next_frame_xent(self, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of predicting each frame from the visible bias alone: the paper's
        pretraining of the RNN part (bv_t = bv + u_{t-1} Wuv as independent Bernoullis)."""
        u_prev = self.previous_states(v)
        logits = self.bv + u_prev @ self.Wuv
        xent = F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(-1)
        return (xent * mask).sum() / mask.sum().clamp_min(1)

    def tempered(self, temperature: float) -> "RNNRBM":
        """A copy that samples at temperature 1 what this model samples at `temperature`.

        The contract's temperature divides every RBM pre-activation (v W + bh_t, h W^T + bv_t),
        and those are linear in W, bv, bh, Wuv and Wuh: dividing those five divides them all.
        The RNN (Wvu, Wuu, bu, u0) is untouched, so the histories it reads are the same."""
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature {temperature}: give a positive number")
        scaled = RNNRBM(self.config).to(self.W.device)
        scaled.load_state_dict(self.state_dict())
        with torch.no_grad():
            for name in ("W", "bv", "bh", "Wuv", "Wuh"):
                getattr(scaled, name).div_(temperature)
        return scaled

    # --- the exported step (the contract's semantics, the float32 reference) --------------

    def step(self, u_prev: torch.Tensor, noise: torch.Tensor, clamp_mask: torch.Tensor,
             clamp_value: torch.Tensor, temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: (u_{t-1}, noise [B, K, n_h+n_v], clamps, temperature [B, 1]) -> (v_t, u_t)."""
        nh = self.config.n_hidden
        bv_t = self.bv + u_prev @ self.Wuv
        bh_t = self.bh + u_prev @ self.Wuh
        held = clamp_mask * clamp_value
        free = 1 - clamp_mask
        v = held
        for k in range(noise.shape[1]):
            h = (noise[:, k, :nh] < torch.sigmoid((v @ self.W + bh_t) / temperature)).float()
            v = (noise[:, k, nh:] < torch.sigmoid((h @ self.W.T + bv_t) / temperature)).float()
            v = held + free * v
        u = torch.tanh(self.bu + v @ self.Wvu + u_prev @ self.Wuu)
        return v, u

    def sampler_step(self, sampler: Sampler, u_prev: torch.Tensor, v_prev: torch.Tensor, noise: torch.Tensor,
                     clamp_mask: torch.Tensor, clamp_value: torch.Tensor,
                     temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The version 2 step: (u_{t-1}, v_{t-1}, noise [B, R, K+1, n_h+n_v], clamps, T) -> (v_t, u_t)."""
        bv_t = self.bv + u_prev @ self.Wuv
        bh_t = self.bh + u_prev @ self.Wuh
        a = self.proposal.logits(u_prev, v_prev) if sampler.kind == "guided" else None
        v = draw(sampler, self.W, bv_t, bh_t, v_prev, noise, clamp_mask, clamp_value, temperature, proposal=a)
        u = torch.tanh(self.bu + v @ self.Wvu + u_prev @ self.Wuu)
        return v, u

    @torch.no_grad()
    def generate(self, n_frames: int, batch: int = 1, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Free-running samples [batch, n_frames, n_v], as the tutorial's generate."""
        c = self.config
        u = self.u0.expand(batch, -1)
        zeros = torch.zeros(batch, c.n_visible)
        temp = torch.full((batch, 1), float(temperature))
        frames = []
        for _ in range(n_frames):
            noise = torch.rand(batch, c.gibbs_steps, c.n_hidden + c.n_visible, generator=generator)
            v, u = self.step(u, noise, zeros, zeros, temp)
            frames.append(v)
        return torch.stack(frames, dim=1)
