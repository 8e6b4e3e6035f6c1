"""The guided sampler (export/sampler.py, export/proposal.py): it draws from the frame's RBM
itself, whatever its proposal, and the proposal fitted on real music guesses frames."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnrbm_export.model import RNNRBM, RNNRBMConfig
from rnnrbm_export.frames import frame_inputs, previous_frames
from rnnrbm_export.proposal import fit_for_checkpoint, fit_proposal
from rnnrbm_export.sampler import Sampler, draw, noise_shape
from rnnrbm_live.midi.datasets import load_split

FREE = 6  # units left free: 64 frames, few enough to weigh every one exactly


def _model() -> RNNRBM:
    torch.manual_seed(7)
    model = RNNRBM(RNNRBMConfig(n_hidden=40, n_recurrent=16, init_std=0.6, dataset="random"))
    with torch.no_grad():
        model.bv.normal_(-1, 1)
        model.bh.normal_(0, 1)
    return model


def _exact(W: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, held: torch.Tensor, free_units: list[int],
           T: float) -> torch.Tensor:
    """p of each of the 2^FREE frames (free units in binary order) given the held units."""
    frames = held.repeat(2 ** FREE, 1)
    for i, bits in enumerate(itertools.product((0.0, 1.0), repeat=FREE)):
        frames[i, free_units] = torch.tensor(bits)
    log_p = (frames @ bv) / T + F.softplus((frames @ W + bh) / T).sum(-1)
    return torch.softmax(log_p.double(), 0)


def _histogram(drawn: torch.Tensor, free_units: list[int]) -> torch.Tensor:
    weights = 2 ** torch.arange(FREE - 1, -1, -1)
    index = (drawn[:, free_units].long() * weights).sum(-1)
    return torch.bincount(index, minlength=2 ** FREE).double() / len(drawn)


@pytest.mark.parametrize("T", [1.0, 0.7])
def test_guided_draws_follow_the_frames_rbm_not_its_proposal(T):
    """82 units held, 6 free: the frames drawn (20,000 of them) come closer to the RBM's
    exact distribution over the 64 free configurations as candidates are added, although
    the proposal knows nothing of the RBM; a single candidate (no weighing) stays far off.
    (Finitely many candidates lean toward the proposal; a sweep after the pick lessens it.)"""
    model, g = _model(), torch.Generator().manual_seed(1)
    with torch.no_grad():
        bv, bh, W = model.bv + torch.randn(88, generator=g), model.bh.clone(), model.W.clone()
    free_units = sorted(torch.randperm(88, generator=g)[:FREE].tolist())
    mask = torch.ones(88)
    mask[free_units] = 0
    value = (torch.rand(88, generator=g) < 0.1).float() * mask
    exact = _exact(W, bv, bh, value, free_units, T)
    n = 20_000
    a = (torch.randn(88, generator=g) * 0.5).expand(n, -1)  # a proposal that knows nothing of the RBM
    rows = {name: x.expand(n, -1) for name, x in (("bv", bv), ("bh", bh), ("mask", mask),
                                                    ("value", value))}
    distances = {}
    for chains in (1, 16, 256):
        sampler = Sampler("guided", 1, chains=chains)
        noise = torch.rand(n, *noise_shape(sampler, 40, 88), generator=g)
        drawn = draw(sampler, W, rows["bv"], rows["bh"], torch.zeros(n, 88), noise, rows["mask"], rows["value"],
                     torch.full((n, 1), T), proposal=a)
        assert torch.equal(drawn * mask, value.expand(n, -1))  # held units stay held
        distances[chains] = 0.5 * float((_histogram(drawn, free_units) - exact).abs().sum())
    assert distances[256] < 0.05 and distances[1] > 0.15, distances
    assert distances[1] > distances[16] > distances[256], distances


def test_the_fitted_proposal_guesses_real_frames():
    """Fitted on 40 real chorales (through an untrained RNN: what it learns comes from the
    previous frame), the proposal's cross-entropy on 10 others is well below that of each
    key's base rate; the same data and seed fit the same proposal."""
    model = _model()
    model.config.frames_per_beat = 1
    train, held_out = load_split("jsb_chorales", "train")[:40], load_split("jsb_chorales", "valid")[:10]
    proposal = fit_proposal(model, train, data="jsb_chorales", steps=400)
    v, u = frame_inputs(model, held_out)[:2]
    prev = previous_frames(held_out)
    rate = torch.cat([torch.from_numpy(s) for s in train]).float().mean(0).clamp(1e-3, 1 - 1e-3)
    guessed = F.binary_cross_entropy_with_logits(proposal.logits(u, prev), v) * 88
    base = F.binary_cross_entropy_with_logits(torch.logit(rate).expand_as(v), v) * 88
    assert float(guessed) < 0.9 * float(base)
    assert proposal.fit["frames"] == sum(len(s) for s in train) and proposal.fit["data"] == "jsb_chorales"
    again = fit_proposal(model, train, data="jsb_chorales", steps=400)
    assert torch.equal(again.P, proposal.P)  # the same data and seed give the same proposal
    assert np.isfinite(proposal.fit["xent_per_frame"])


def test_a_folder_models_proposal_keeps_its_key_moves_when_its_data_is_named_again(tmp_path):
    """rnnrbm-temper and rnnrbm-export name --data; naming the card's own folder fits the
    proposal on the pieces as the model saw them (moved to C), not as they are."""
    folder = tmp_path / "pieces"
    folder.mkdir()
    for path in (Path(__file__).parent / "fixtures" / "midi").glob("*.mid"):  # music nobody here wrote
        shutil.copy(path, folder / path.name)
    model = _model()
    moved = {"train_settings": {"data": str(folder), "transpose_to_c": True}}
    as_trained = fit_for_checkpoint(model, moved)
    named_again = fit_for_checkpoint(model, moved, str(folder))
    as_they_are = fit_for_checkpoint(model, {"train_settings": {"data": str(folder)}})
    assert torch.equal(named_again.P, as_trained.P) and torch.equal(named_again.pb, as_trained.pb)
    assert not torch.equal(as_they_are.pb, as_trained.pb)  # the key moves matter to the fit
