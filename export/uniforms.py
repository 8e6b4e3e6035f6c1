"""Uniform [0, 1) noise for the Gibbs samplers, written into preallocated float32 buffers.

On the CPU numpy's PCG64 fills a buffer at about 1.5x the speed of torch.rand, and
sampling is a large share of CD-k and AIS time; on a GPU torch's generator runs there.
The state can be saved and restored (as a uint8 tensor) so --resume is exact."""

from __future__ import annotations

import json

import numpy as np
import torch


class Uniforms:
    def __init__(self, device: str | torch.device = "cpu", seed: int | list[int] = 0):
        self.device = torch.device(device)
        if self.device.type == "cpu":
            self.rng = np.random.default_rng(seed)
        else:
            flat = seed if isinstance(seed, int) else int(np.random.SeedSequence(seed).generate_state(1)[0])
            self.generator = torch.Generator(self.device).manual_seed(flat)

    def fill(self, buf: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            self.rng.random(out=buf.numpy(), dtype=np.float32)
        else:
            buf.uniform_(generator=self.generator)
        return buf

    def like(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self.fill(torch.empty(shape, device=self.device))

    def get_state(self) -> torch.Tensor:
        if self.device.type == "cpu":
            return torch.frombuffer(bytearray(json.dumps(self.rng.bit_generator.state).encode()), dtype=torch.uint8)
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        if self.device.type == "cpu":
            self.rng.bit_generator.state = json.loads(bytes(state.cpu().numpy()).decode())
        else:
            self.generator.set_state(state.cpu())


class BlockUniforms:
    """Noise for a batch whose rows come in blocks, each block drawn from its own stream:
    blocks[i] = (rows, Uniforms). What a block gets does not depend on which other blocks
    share the batch, so work split into any groups of blocks draws the same numbers."""

    def __init__(self, blocks: list[tuple[slice, Uniforms]]):
        self.blocks = blocks

    def fill(self, buf: torch.Tensor) -> torch.Tensor:
        for rows, uniforms in self.blocks:
            uniforms.fill(buf[rows])
        return buf
