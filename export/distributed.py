"""Training on several processes at once: the world torchrun describes, the process group,
the sums across ranks, and stopping all ranks together.

`torchrun --nproc-per-node N -m rnnrbm_export.train ...` (or `rnnrbm-train` under torchrun)
sets RANK, WORLD_SIZE and LOCAL_RANK in every process; without them the world is one
process and nothing here starts a process group. gloo carries the sums on CPUs, nccl on
GPUs (each rank on the GPU of its LOCAL_RANK)."""

from __future__ import annotations

import datetime
import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rnnrbm_live.errors import UserError

from .checkpoint import pick_device

# Rank 0 may parse a whole folder of MIDI files while the others wait for it at a barrier.
_COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0  # this process's index on its own machine: its GPU, its share of the parsing

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and progress bars."""
        return self.rank == 0

    def share(self, items: list) -> list:
        """This rank's items: every size-th from its rank on, so lengths spread evenly."""
        return items[self.rank::self.size]


def from_environment() -> World:
    """The world torchrun set up, or one process."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UserError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers; start with torchrun") from None
    if size < 1 or not 0 <= rank < size:
        raise UserError(f"RANK {rank} of WORLD_SIZE {size}: not a rank of that world; start with torchrun")
    return World(rank, size, local)


def start(world: World, device: str) -> torch.device:
    """The device this rank trains on; with more than one rank, the process group too."""
    if world.size == 1:
        return pick_device(device)
    chosen = pick_device(device)
    if chosen.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {world.local_rank}: this machine has {torch.cuda.device_count()} gpus; "
                            f"start at most that many processes per node, or use --device cpu")
        chosen = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=_COLLECTIVE_TIMEOUT,
                                device_id=chosen if chosen.type == "cuda" else None)
    except (ValueError, RuntimeError) as e:  # WORLD_SIZE set by hand without MASTER_ADDR, a port taken, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"rank {world.rank} of {world.size}: cannot join the other processes ({first}); "
                        f"start with torchrun") from None
    return chosen


def stop() -> bool:
    """Leave the process group; whether there was one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        return True
    return False


def sums(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over all ranks (float64, so frame counts stay exact)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class StopSignal:
    """Ctrl+C and SIGTERM (a scheduler's) as a request to stop after the current step.

    One process stops at once, as it always has. Under torchrun a rank must not leave in
    the middle of a step, where the others wait for its gradients: the signal only raises a
    flag, and `requested()` asks every rank at each step's end, so all stop at the same
    step and rank 0 saves once. torchrun sends the signal on to every rank and kills what
    still runs 30 s later (its --shutdown-timeout)."""

    def __init__(self, world: World, device: torch.device):
        self.world = world
        self.device = device
        self.flag = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.world.size == 1:
            raise KeyboardInterrupt
        self.flag = True

    def requested(self) -> bool:
        """True on every rank when any rank has been signalled (a collective: all ranks call it)."""
        if self.world.size == 1:
            return False
        return sums([float(self.flag)], self.device)[0] > 0
