"""The frames of a set of sequences, each with its conditional RBM given the true history,
and the paper's frame accuracy: what rnnrbm-eval (evaluate.py) and "ACC, played"
(played.py) both measure on."""

from __future__ import annotations

import numpy as np
import torch

from . import batching
from .model import RNNRBM

_SEQUENCES_PER_BATCH = 16  # RNN passes over padded batches; the RNN is a small part of the cost


@torch.no_grad()
def frame_biases(model: RNNRBM, sequences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every frame v_t [N, n_v] of the sequences, in order, with the biases bv_t [N, n_v]
    and bh_t [N, n_h] of its RBM given the true history v_<t; on the model's device."""
    v, _, bv, bh = frame_inputs(model, sequences)
    return v, bv, bh


@torch.no_grad()
def frame_inputs(model: RNNRBM, sequences: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
    """frame_biases() with each frame's previous recurrent state u_{t-1} [N, n_u] after v_t:
    (v, u_prev, bv, bh), from one pass of the RNN."""
    device = model.W.device
    parts: list[list[torch.Tensor]] = [[], [], [], []]
    for start in range(0, len(sequences), _SEQUENCES_PER_BATCH):
        v, mask = batching.pad(sequences[start:start + _SEQUENCES_PER_BATCH], device)
        u = model.previous_states(v)
        keep = mask.bool()
        for part, x in zip(parts, (v, u, *model.biases(u))):
            part.append(x[keep])
    return tuple(torch.cat(p) for p in parts)


def frame_accuracy(samples: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of 0/1 frames: TP / (TP + FP + FN), with 0/0 (a silent frame sampled
    silent: nothing to get wrong) counted as 1; and the TP and TP + FP + FN counts."""
    tp = (samples * target).sum(-1)
    union = samples.sum(-1) + target.sum(-1) - tp  # TP + FP + FN
    acc = torch.where(union > 0, tp / union.clamp(min=1), torch.ones_like(tp))
    return acc, tp, union


def previous_frames(sequences: list[np.ndarray]) -> torch.Tensor:
    """v_{t-1} of every frame of the sequences, in order; silence before each first frame."""
    out = []
    for s in sequences:
        prev = np.zeros_like(s, dtype=np.float32)
        prev[1:] = s[:-1]
        out.append(prev)
    return torch.from_numpy(np.concatenate(out))
