"""Padded mini-batches of piano-roll sequences, so that one update trains many sequences
at once (what makes a GPU worth using). A batch is v [B, T, n_v] with mask [B, T]."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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


def batch_groups(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """The pieces of each batch, shuffled, of similar length (little padding wasted):
    pieces are sorted by length within random windows of 50 batches, then the batches
    are shuffled. Only lengths are read, so pieces on disk stay there."""
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    groups = []
    for w in range(0, len(order), window):
        idx = sorted(order[w:w + window], key=lambda i: lengths[i])
        groups += [[int(i) for i in idx[b:b + batch_size]] for b in range(0, len(idx), batch_size)]
    return [groups[g] for g in rng.permutation(len(groups))]


def batches(pieces: list[np.ndarray], batch_size: int, rng: np.random.Generator,
            device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Padded batches of batch_groups' pieces, for one process."""
    for group in batch_groups([len(p) for p in pieces], batch_size, rng):
        yield pad([pieces[i] for i in group], device)


@dataclass
class Share:
    """One rank's part of a global batch: its pieces padded, which pieces they are
    (`pieces`, indices into the epoch's list) at which rows of the global batch (`rows`),
    and `weight`, what its mean cost is multiplied by so that the gradients averaged
    over ranks are those of the whole batch's mean cost."""

    v: torch.Tensor
    mask: torch.Tensor
    pieces: list[int]
    rows: list[int]
    lengths: list[int]
    global_shape: tuple[int, int]
    weight: float


def shares(pieces: list[np.ndarray], batch_size: int, rng: np.random.Generator, rank: int, world: int,
           device: str | torch.device = "cpu") -> Iterator[Share]:
    """Every rank's share of the same global batches (batch_size pieces each, whatever the
    world size): rows rank, rank + world, ... of each batch, so lengths spread evenly. A
    rank whose share is empty (a last batch smaller than the world) still takes the step
    with one masked frame: all ranks must take every step together."""
    lengths = [len(p) for p in pieces]
    for group in batch_groups(lengths, batch_size, rng):
        rows = list(range(rank, len(group), world))
        mine = [group[r] for r in rows]
        n_global = sum(lengths[i] for i in group)
        shape = (len(group), max(lengths[i] for i in group))
        if mine:
            v, mask = pad([pieces[i] for i in mine], device)
        else:
            v, mask = torch.zeros(1, 1, pieces[0].shape[1], device=device), torch.zeros(1, 1, device=device)
        n_local = sum(lengths[i] for i in mine)
        yield Share(v, mask, mine, rows, [lengths[i] for i in mine], shape, n_local * world / n_global)


def frame_shares(pieces: list[np.ndarray], frames_per_batch: int, rng: np.random.Generator, rank: int,
                 world: int, device: str | torch.device = "cpu") -> Iterator[Share]:
    """Frames shuffled across pieces as [N, 1, n_v] batches, each rank every world-th frame
    of each: the paper's RBM pretraining sees frames without their history."""
    frames = np.concatenate(pieces).astype(np.float32)
    order = rng.permutation(len(frames))
    for b in range(0, len(order), frames_per_batch):
        batch = order[b:b + frames_per_batch]
        mine = batch[rank::world]
        v = torch.from_numpy(frames[mine]).to(device)[:, None, :]
        mask = torch.ones(v.shape[:2], device=device)
        if not len(mine):
            v, mask = torch.zeros(1, 1, frames.shape[1], device=device), torch.zeros(1, 1, device=device)
        yield Share(v, mask, [], [], [], (len(batch), 1), len(mine) * world / len(batch))
