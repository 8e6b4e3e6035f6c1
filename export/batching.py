"""Padded mini-batches of piano-roll sequences, so that one update trains many sequences
at once (what makes a GPU worth using). A batch is v [B, T, n_v] with mask [B, T]."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def chunk(sequences: list[np.ndarray], seq_len: int | None) -> list[np.ndarray]:
    """Cut sequences into pieces of at most seq_len frames (each starts from u0, as the
    tutorial's 100-frame chunks do); None keeps whole sequences."""
    if not seq_len:
        return [s for s in sequences if len(s)]
    return [s[i:i + seq_len] for s in sequences for i in range(0, len(s), seq_len)]


def pad(pieces: list[np.ndarray], device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(p) for p in pieces)
    v = np.zeros((len(pieces), T, pieces[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(pieces), T), dtype=np.float32)
    for i, p in enumerate(pieces):
        v[i, :len(p)] = p
        mask[i, :len(p)] = 1
    return torch.from_numpy(v).to(device), torch.from_numpy(mask).to(device)


def batches(pieces: list[np.ndarray], batch_size: int, rng: np.random.Generator,
            device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of pieces of similar length (little padding wasted): pieces are
    sorted by length within random windows of 50 batches, then the batches are shuffled."""
    order = rng.permutation(len(pieces))
    window = batch_size * 50
    groups = []
    for w in range(0, len(order), window):
        idx = sorted(order[w:w + window], key=lambda i: len(pieces[i]))
        groups += [idx[b:b + batch_size] for b in range(0, len(idx), batch_size)]
    for g in rng.permutation(len(groups)):
        yield pad([pieces[i] for i in groups[g]], device)


def frame_batches(pieces: list[np.ndarray], frames_per_batch: int, rng: np.random.Generator,
                  device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Frames shuffled across pieces as [N, 1, n_v] batches: the paper's RBM pretraining
    sees frames without their history."""
    frames = np.concatenate(pieces).astype(np.float32)
    order = rng.permutation(len(frames))
    for b in range(0, len(order), frames_per_batch):
        v = torch.from_numpy(frames[order[b:b + frames_per_batch]]).to(device)[:, None, :]
        yield v, torch.ones(v.shape[:2], device=device)
