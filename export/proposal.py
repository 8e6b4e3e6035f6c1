"""The "guided" sampler's proposal: independent Bernoulli units whose logits a linear map
reads from the step's own inputs,

    a_t = pb + [u_{t-1}, v_{t-1}] P          (P [n_u + n_v, n_v], pb [n_v])

fitted after training, with the RNN-RBM held fixed, by logistic regression of each frame on
its true history (the cross-entropy of the frames of the training split). It is the RNN
baseline of the paper grafted onto the trained RNN: a guess of the frame that any RBM
sample may be weighed against. The RBM stays the model; the proposal only decides where
the sampler looks (export/sampler.py weighs every candidate by p(v) / q(v)), so a poor fit
costs samples, never correctness.

Two settings of the sampler are folded into P and pb before export. A spread S divides the
logits: a wider proposal than the fit, whose candidates also reach the frames the RBM likes
and the data rarely shows (with finitely many candidates a proposal sharper than the RBM
leans the draws toward itself). A lean L toward the previous frame adds L (2 v_{t-1} - 1)
to the free units' logits: 2L on P's v_{t-1} diagonal and -L on pb. Held units ignore the
logits, so both folds are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.datasets import DATASETS, dataset_frames_per_beat, load_split

from .frames import frame_inputs, previous_frames
from .model import RNNRBM

TENSOR_NAMES = ("P", "pb")  # in the exported .safetensors, beside the contract's tensors


@dataclass(frozen=True)
class Proposal:
    P: torch.Tensor  # [n_u + n_v, n_v]: u_{t-1} then v_{t-1} -> the frame's logits
    pb: torch.Tensor  # [n_v]
    fit: dict  # how it was fitted: data, frames, cross-entropy per frame, lean

    def logits(self, u_prev: torch.Tensor, v_prev: torch.Tensor) -> torch.Tensor:
        """a_t [N, n_v] for the rows of u_{t-1} [N, n_u] and v_{t-1} [N, n_v], in their dtype."""
        dtype = u_prev.dtype
        return self.pb.to(dtype) + torch.cat([u_prev, v_prev], 1) @ self.P.to(dtype)

    def shaped(self, lean: float = 0.0, spread: float = 1.0) -> "Proposal":
        """The same proposal widened (its logits divided by `spread`), then with `lean`
        folded in (see the module's docstring)."""
        n_v = self.P.shape[1]
        P = self.P / spread
        P[-n_v:] += 2 * lean * torch.eye(n_v, dtype=P.dtype)
        return Proposal(P, self.pb / spread - lean, {**self.fit, "lean": lean, "spread": spread})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"P": self.P.contiguous(), "pb": self.pb.contiguous()}


def fit_proposal(model: RNNRBM, sequences: list[np.ndarray], *, data: str, steps: int = 2000,
                 batch: int = 1024, lr: float = 0.01, seed: int = 0) -> Proposal:
    """Logistic regression of v_t on [u_{t-1}, v_{t-1}] over the sequences' frames (Adam,
    minibatches drawn with `seed`: the same data and seed give the same proposal)."""
    v, u = frame_inputs(model, sequences)[:2]
    x = torch.cat([u, previous_frames(sequences).to(u.device)], 1)
    n_v = v.shape[1]
    g = torch.Generator().manual_seed(seed)
    P = torch.zeros(x.shape[1], n_v, requires_grad=True)
    pb = torch.logit(v.mean(0).clamp(1e-3, 1 - 1e-3)).detach().requires_grad_(True)
    opt = torch.optim.Adam([P, pb], lr=lr)
    with torch.enable_grad():  # also when called under no_grad (a benchmark generating music)
        for _ in range(steps):
            rows = torch.randint(len(x), (min(batch, len(x)),), generator=g)
            loss = F.binary_cross_entropy_with_logits(pb + x[rows] @ P, v[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        xent = float(F.binary_cross_entropy_with_logits(pb + x @ P, v)) * n_v
    return Proposal(P.detach(), pb.detach(), {"data": data, "split": "train", "frames": len(x),
                                               "xent_per_frame": round(xent, 4), "steps": steps, "seed": seed})


def from_tensors(tensors: dict[str, torch.Tensor], fit: dict | None = None) -> Proposal:
    """A proposal read back from an exported .safetensors (lean already folded in)."""
    return Proposal(tensors["P"].float(), tensors["pb"].float(), dict(fit or {}))


def fit_for_checkpoint(model: RNNRBM, checkpoint_card: dict, data: str | None = None) -> Proposal:
    """A proposal fitted on the training split the checkpoint's card names (or on `data`)."""
    settings = checkpoint_card.get("train_settings") or {}
    own = settings.get("data")
    name = data or own
    if not name:
        raise UserError("--data: the checkpoint does not say what it was trained on; name its training data "
                        "(a dataset or a folder of MIDI files) to fit the guided sampler's proposal")
    fpb = model.config.frames_per_beat
    if name in DATASETS and dataset_frames_per_beat(name) != fpb:
        raise UserError(f"--data {name}: its grid is {dataset_frames_per_beat(name)} frames per beat, the model's "
                        f"is {fpb}; fit the proposal on the data the model was trained on")
    sequences = load_split(name, "train", frames_per_beat=None if name in DATASETS else fpb,
                           transpose_to_c=bool(settings.get("transpose_to_c")) and name == own, report=False)
    if not sequences:
        raise UserError(f"--data {name}: no training pieces to fit the guided sampler's proposal on")
    return fit_proposal(model, sequences, data=str(name))
