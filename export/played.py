"""ACC, played: what the exported step plays, given the true history.

Every frame's RBM is conditioned on the true history v_<t (as for the paper's ACC), and the
step's own sampler (export/sampler.py: the float32 reference the ONNX graph computes) draws
the frame, with the true previous frame as its v_prev; the expected accuracy of those
draws against the true frame is what a user hears of the model, beside the model's own
ACC (evaluate.py: the AIS runs' importance-weighted samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from rnnrbm_live.errors import UserError
from rnnrbm_live.model.card import FORMAT_V1, read_card

from .frames import frame_accuracy, frame_inputs, previous_frames
from .measures import sem
from .model import RNNRBM
from .proposal import TENSOR_NAMES, Proposal, from_tensors
from .sampler import DEFAULT_SAMPLER, Sampler, draw, noise_shape
from .uniforms import Uniforms

_FRAMES_PER_CHUNK = 512
CARD_ONLY = ("label", "proposal")  # what a card's sampler says beside the Sampler's own fields


@torch.no_grad()
def played_accuracies(model: RNNRBM, sequences: list[np.ndarray], sampler: Sampler, *, samples: int = 1,
                      seed: int = 0, temperature: float = 1.0, frames: slice = slice(None)) -> torch.Tensor:
    """Per frame [N] (float64): the expected accuracy of `samples` frames the step draws;
    for `frames` of the split only (a shard), with the draws a whole run gives them."""
    v, u_prev, bv, bh = frame_inputs(model, sequences)
    prev = previous_frames(sequences).to(v.device)
    a = model.proposal.logits(u_prev, prev) if sampler.kind == "guided" else None
    return accuracies_given(model.W.detach(), v, bv, bh, prev, sampler, samples=samples, seed=seed,
                            temperature=temperature, frames=frames, proposal=a)


@torch.no_grad()
def accuracies_given(W: torch.Tensor, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, prev: torch.Tensor,
                     sampler: Sampler, *, samples: int = 1, seed: int = 0,
                     temperature: float = 1.0, frames: slice = slice(None),
                     proposal: torch.Tensor | None = None) -> torch.Tensor:
    """played_accuracies() for frames whose biases (and for "guided" the proposal's
    logits) are already known. Frames go in chunks
    with noise of their own, numbered from the split's first frame, so any range of
    frames gets the same draws as a run over all of them."""
    nv, nh = W.shape
    first, end, _ = frames.indices(len(v))
    per_chunk = max(1, _FRAMES_PER_CHUNK // samples)
    accs = []
    for c in range(first // per_chunk, -(-end // per_chunk)):
        rows = slice(c * per_chunk, (c + 1) * per_chunk)
        rep = [x[rows].repeat_interleave(samples, 0) for x in (v, bv, bh, prev)]
        a = None if proposal is None else proposal[rows].repeat_interleave(samples, 0)
        n = rep[0].shape[0]
        noise = Uniforms(W.device, [seed, 2, c]).like((n, *noise_shape(sampler, nh, nv)))
        zeros = torch.zeros(n, nv, device=W.device)
        temp = torch.full((n, 1), float(temperature), device=W.device)
        drawn = draw(sampler, W, rep[1], rep[2], rep[3], noise, zeros, zeros, temp, proposal=a)
        acc = frame_accuracy(drawn, rep[0])[0].double().view(-1, samples).mean(1)
        lo, hi = max(first, rows.start), min(end, rows.stop)  # the chunk's frames in range
        accs.append(acc[lo - rows.start:hi - rows.start])
    return torch.cat(accs)


# --- rnnrbm-eval's "ACC, played" -------------------------------------------------------------

def add_arguments(p) -> None:
    p.add_argument("--played-samples", type=int, default=1, metavar="N",
                   help="frames the step draws per true frame for 'ACC, played' (0 = skip)")
    p.add_argument("--played-card", metavar="MODEL.onnx.json",
                   help="measure the sampler of this exported model's card (default: rnnrbm-export's default)")


def check(args) -> Sampler | None:
    """The sampler rnnrbm-eval's 'ACC, played' measures (None: skipped), checked up front."""
    if args.played_samples < 0:
        raise UserError(f"--played-samples {args.played_samples}: give 0 (skip) or a positive number")
    if not args.played_samples:
        return None
    return sampler_of(args.played_card) if args.played_card else DEFAULT_SAMPLER


def ready(model: RNNRBM, sampler: Sampler, card_path: str | Path | None) -> Sampler:
    """The sampler, with the model given the proposal beside its card if it is guided."""
    if sampler.kind == "guided":
        model.proposal = proposal_of(card_path)
    return sampler


def measure(args, model: RNNRBM, sequences: list[np.ndarray], frames: slice = slice(None)) -> tuple[torch.Tensor | None, dict]:
    """'ACC, played' for rnnrbm-eval: each frame's (None: skipped) and what was measured."""
    sampler = check(args)
    if sampler is None:
        return None, {}
    acc = played_accuracies(model, sequences, ready(model, sampler, args.played_card), samples=args.played_samples, seed=args.seed,
                            frames=frames)
    return acc, {"played_sampler": sampler.label(), "played_samples": args.played_samples}


def summary(played: torch.Tensor | None, meta: dict) -> dict:
    """The split's 'ACC, played' from its frames': mean and SEM over frames, in %."""
    if played is None:
        return {"acc_played": None}
    return {"acc_played": 100 * float(played.mean()), "acc_played_sem": 100 * sem(played),
            "played_sampler": meta["played_sampler"], "played_samples": meta["played_samples"]}


def sampler_of(card_path: str) -> Sampler:
    card = read_card(Path(card_path))
    if card.get("format") == FORMAT_V1:
        return Sampler("chain", card.get("gibbs_steps"), start="silence")
    try:
        return Sampler.from_dict({k: v for k, v in (card.get("sampler") or {}).items() if k not in CARD_ONLY})
    except (TypeError, ValueError) as e:
        raise UserError(f"{card_path}: its sampler cannot be read ({e}); re-export the model") from None


def proposal_of(card_path: str | Path) -> Proposal:
    """The guided sampler's proposal, from the .safetensors beside an exported model's card."""
    path = Path(str(card_path).removesuffix(".json").removesuffix(".onnx") + ".safetensors")
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise UserError(f"{path}: cannot read the guided sampler's proposal ({e}); re-export the model") from None
    if not set(TENSOR_NAMES) <= set(tensors):
        raise UserError(f"{path}: no guided proposal in it (no {' and '.join(TENSOR_NAMES)}); re-export the model")
    return from_tensors(tensors, (read_card(Path(card_path)).get("sampler") or {}).get("proposal"))


def table_rows(r: dict) -> list[tuple[str, str]]:
    if r.get("acc_played") is None:
        return []
    return [("ACC, played", f"{r['acc_played']:.2f} ± {r['acc_played_sem']:.2f} %   (what the step plays given the "
                            f"true history: {r['played_sampler']}, {r['played_samples']} per frame)")]
