"""ACC, played: what the exported step plays, given the true history.

Every frame's RBM is conditioned on the true history v_<t (as for the paper's ACC), and the
step's own sampler (export/sampler.py: the float32 reference the ONNX graph computes) draws
the frame, with the true previous frame as its v_prev; the expected accuracy of those
draws against the true frame is what a user hears of the model, beside the model's own
ACC (evaluate.py: the AIS runs' importance-weighted samples)."""

from __future__ import annotations

import numpy as np
import torch

from .evaluate import frame_accuracy, frame_biases
from .model import RNNRBM
from .sampler import Sampler, draw, noise_shape
from .uniforms import Uniforms

_FRAMES_PER_CHUNK = 512


def previous_frames(sequences: list[np.ndarray]) -> torch.Tensor:
    """v_{t-1} of every frame of the sequences, in order; silence before each first frame."""
    out = []
    for s in sequences:
        prev = np.zeros_like(s, dtype=np.float32)
        prev[1:] = s[:-1]
        out.append(prev)
    return torch.from_numpy(np.concatenate(out))


@torch.no_grad()
def played_accuracies(model: RNNRBM, sequences: list[np.ndarray], sampler: Sampler, *, samples: int = 1,
                      seed: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """Per frame [N] (float64): the expected accuracy of `samples` frames the step draws."""
    v, bv, bh = frame_biases(model, sequences)
    prev = previous_frames(sequences).to(v.device)
    return accuracies_given(model.W.detach(), v, bv, bh, prev, sampler, samples=samples, seed=seed,
                            temperature=temperature)


@torch.no_grad()
def accuracies_given(W: torch.Tensor, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, prev: torch.Tensor,
                     sampler: Sampler, *, samples: int = 1, seed: int = 0,
                     temperature: float = 1.0) -> torch.Tensor:
    """played_accuracies() for frames whose biases are already known."""
    uniforms = Uniforms(W.device, [seed, 2])
    nv, nh = W.shape
    per_chunk = max(1, _FRAMES_PER_CHUNK // samples)
    accs = []
    for start in range(0, len(v), per_chunk):
        rows = slice(start, start + per_chunk)
        rep = [x[rows].repeat_interleave(samples, 0) for x in (v, bv, bh, prev)]
        n = rep[0].shape[0]
        noise = uniforms.like((n, *noise_shape(sampler, nh, nv)))
        zeros = torch.zeros(n, nv, device=W.device)
        temp = torch.full((n, 1), float(temperature), device=W.device)
        drawn = draw(sampler, W, rep[1], rep[2], rep[3], noise, zeros, zeros, temp)
        acc = frame_accuracy(drawn, rep[0])[0]
        accs.append(acc.double().view(-1, samples).mean(1))
    return torch.cat(accs)
