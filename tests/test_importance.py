"""Importance sampling from a mixture of proposals (export/importance.py) against exact
enumeration on small RBMs: log Z and the expected accuracy of the RBM's own samples, and
a mode one proposal never reaches counted once the mixture's other component does."""

from __future__ import annotations

import torch

from rnnrbm_export.ais import log_partition_exact
from rnnrbm_export.frames import frame_accuracy
from rnnrbm_export.importance import proposal_measures
from test_ais import exact_expectation, rbms


def _exact_acc(W, bv, bh, v):
    return exact_expectation(W, bv, bh, lambda i, s: frame_accuracy(s, v[i].double().expand_as(s))[0])


def test_log_z_and_accuracy_match_exact_enumeration():
    W, bv, bh = rbms(10, 8, 6, seed=3, w_std=0.8)
    g = torch.Generator().manual_seed(4)
    v = (torch.rand(6, 10, generator=g) < 0.3).float()
    proposals = [bv, bv / 2]  # the visible biases alone, and a wider copy of them
    log_z, acc, ess = proposal_measures(W, v, bv, bh, proposals, candidates=200_000, generator=g)
    torch.testing.assert_close(log_z, log_partition_exact(W.double(), bv.double(), bh.double()), rtol=0, atol=0.02)
    torch.testing.assert_close(acc, _exact_acc(W, bv, bh, v), rtol=0, atol=0.01)
    assert bool((ess > 1000).all() and (ess <= 200_000).all()), ess


def test_a_mode_one_proposal_misses_is_found_by_the_mixture():
    """An RBM with two modes, all ten units on or all off: a proposal that only proposes
    silence sees one mode and reads accuracy 0 against the full frame; mixed with a wide
    proposal it finds the other mode's mass, as enumeration does."""
    n = 10
    W = torch.full((n, 1), 3.0)
    bv = torch.full((1, n), -1.5)
    bh = torch.full((1, 1), -15.0)
    v = torch.ones(1, n)
    exact_acc = _exact_acc(W, bv, bh, v)
    assert 0.2 < float(exact_acc) < 0.8  # both modes carry real mass
    g = torch.Generator().manual_seed(0)
    silent = torch.full((1, n), -12.0)
    _, alone, _ = proposal_measures(W, v, bv, bh, [silent], candidates=4096, generator=g)
    log_z, mixed, _ = proposal_measures(W, v, bv, bh, [silent, torch.zeros(1, n)], candidates=65_536, generator=g)
    assert float(alone) < 0.05
    torch.testing.assert_close(mixed, exact_acc, rtol=0, atol=0.02)
    torch.testing.assert_close(log_z, log_partition_exact(W.double(), bv.double(), bh.double()), rtol=0, atol=0.05)
