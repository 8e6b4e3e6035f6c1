"""What --resume needs besides the weights: the optimizer's state as flat named tensors
(safetensors holds tensors, not nested dicts), and reading a resume point."""

from __future__ import annotations

from pathlib import Path

import torch

from rnnrbm_live.errors import UserError

from .checkpoint import load_checkpoint, load_state


def flat_optimizer_state(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in enumerate(opt.state_dict()["state"].values()):
        for k, v in st.items():
            out[f"{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(float(v))).detach().contiguous()
    return out


def load_optimizer_state(opt: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, v in flat.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def read_resume_point(path: Path) -> tuple[dict, dict, dict] | str:
    """(weights, optimizer state, card) on the CPU, or the one-line error to show: under
    torchrun rank 0 reads and every rank must learn whether it could."""
    try:
        model, card = load_checkpoint(path)
        state = load_state(path)
    except UserError as e:
        return str(e)
    optimizer = {k[4:]: v for k, v in state.items() if k.startswith("opt.")}
    return model.state_dict(), optimizer, card
