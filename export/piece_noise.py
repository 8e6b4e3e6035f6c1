"""The Gibbs noise of one training batch, the same for a piece whichever rank trains it.

A global batch is split across ranks; if each rank drew its noise from a stream of its
own, a piece's negative samples would depend on the world size and on which rank it
landed. Here a piece's noise depends only on the seed, the epoch and the piece:

- on the CPU each piece has its own stream (numpy's PCG64, seeded by seed, epoch and the
  piece's index); a frame's noise sits at the same place in that stream however long the
  padded batch is, so padding never moves it. Padded frames get 1.0 (never a note).
- on a GPU a stream per piece would cost a kernel launch per piece and Gibbs step, so
  every rank draws the noise of the whole global batch from one generator seeded by seed,
  epoch and batch, and keeps its own rows: random numbers are nearly free on a GPU.

Either way one step on 2 ranks of 4 pieces sees the same noise as one process of 8, and
the result depends on the seed, not on the world size (up to float rounding)."""

from __future__ import annotations

import numpy as np
import torch


class PieceNoise:
    """Fills the Gibbs chain's buffers [B, T, n] for the rows of one rank's share."""

    def __init__(self, device: torch.device, seed: int, epoch: int, batch: int, pieces: list[int],
                 lengths: list[int], rows: list[int], global_shape: tuple[int, int]):
        self.device = device
        self.lengths = lengths
        if device.type == "cpu":
            self.streams = [np.random.default_rng([seed, 4, epoch, p]) for p in pieces]
        else:
            self.generator = torch.Generator(device).manual_seed(
                int(np.random.SeedSequence([seed, 4, epoch, batch]).generate_state(1)[0]))
            self.rows = torch.tensor(rows, dtype=torch.long, device=device)
            self.global_shape = global_shape

    def fill(self, buf: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            out = buf.numpy()
            for row, (stream, n) in enumerate(zip(self.streams, self.lengths)):
                stream.random(out=out[row, :n], dtype=np.float32)
                out[row, n:] = 1.0
            out[len(self.streams):] = 1.0  # an empty share's placeholder row
            return buf
        whole = torch.rand((*self.global_shape, buf.shape[-1]), generator=self.generator, device=self.device)
        return buf.copy_(whole[self.rows, : buf.shape[1]]) if len(self.rows) else buf.fill_(1.0)
