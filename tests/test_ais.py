"""AIS partition functions against exact enumeration, on small RBMs with weights of the
scale a trained RNN-RBM has (real computation, a few seconds in all)."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnrbm_export.ais import ais, annealing_schedule, free_energy, log_partition_ais, log_partition_exact


def rbms(n_v: int, n_h: int, n: int, seed: int = 0, w_std: float = 0.5):
    """W [n_v, n_h] and n RBMs' biases, visible ones mostly negative like sparse piano rolls."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_v, n_h, generator=g) * w_std
    bv = torch.randn(n, n_v, generator=g) - 1.5
    bh = torch.randn(n, n_h, generator=g) * 0.5 - 0.5
    return W, bv, bh


def all_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def test_exact_log_z_is_the_same_over_either_layer_and_matches_the_joint_sum():
    W, bv, bh = rbms(6, 5, 3)
    W, bv, bh = W.double(), bv.double(), bh.double()
    vs, hs = all_states(6), all_states(5)
    minus_energy = (vs @ bv.T)[:, None, :] + (hs @ bh.T)[None, :, :] + (vs @ W @ hs.T)[:, :, None]
    joint = torch.logsumexp(minus_energy.reshape(-1, 3), dim=0)
    torch.testing.assert_close(log_partition_exact(W, bv, bh, over="hidden"), joint)
    torch.testing.assert_close(log_partition_exact(W, bv, bh, over="visible"), joint)


def test_exact_log_z_agrees_over_either_layer_at_test_size():
    W, bv, bh = rbms(12, 10, 4)
    torch.testing.assert_close(log_partition_exact(W, bv, bh, over="hidden"),
                               log_partition_exact(W, bv, bh, over="visible"), rtol=0, atol=1e-9)


def test_exact_enumeration_refuses_more_than_2_to_the_20_states():
    W, bv, bh = rbms(21, 22, 1)
    with pytest.raises(ValueError, match="2\\^21"):
        log_partition_exact(W, bv, bh)


def test_free_energy_is_minus_log_of_the_sum_over_hidden_states():
    W, bv, bh = rbms(7, 5, 4)
    v = (torch.rand(4, 7, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    hs = all_states(5).float()
    minus_energy = (v * bv).sum(-1, keepdim=True) + bh @ hs.T + (v @ W) @ hs.T  # [4, 32]
    torch.testing.assert_close(free_energy(W, v, bv, bh), -torch.logsumexp(minus_energy, dim=1))


def test_ais_matches_exact_enumeration_within_its_standard_error():
    W, bv, bh = rbms(12, 10, 8)
    exact = log_partition_exact(W, bv, bh)
    est, se = log_partition_ais(W, bv, bh, n_runs=100, n_temps=500, generator=torch.Generator().manual_seed(0))
    err = (est - exact).abs()
    assert err.max() < 0.05, err
    assert (err < 4 * se + 0.005).all(), (err, se)
    assert (se > 0).all() and (se < 0.03).all(), se


def test_ais_handles_a_hidden_layer_larger_than_the_visible_one():
    # The chains hold h (150 units in the real model): here 40 hidden, 11 visible units.
    W, bv, bh = rbms(11, 40, 4, seed=3, w_std=0.3)
    exact = log_partition_exact(W, bv, bh)  # over the 2^11 visible states
    est, se = log_partition_ais(W, bv, bh, n_runs=100, n_temps=500, generator=torch.Generator().manual_seed(1))
    err = (est - exact).abs()
    assert err.max() < 0.06 and (err < 4 * se + 0.005).all(), (err, se)


def test_ais_is_right_where_exp_would_overflow_float32():
    # Visible biases near 90 take the softplus path that cannot overflow.
    W, bv, bh = rbms(12, 10, 3, seed=4)
    bv[:, :3] += 90
    exact = log_partition_exact(W, bv, bh)
    est, se = log_partition_ais(W, bv, bh, n_runs=100, n_temps=300, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(est).all()
    assert ((est - exact).abs() < 4 * se + 0.01).all(), (est - exact, se)


def test_fewer_temperatures_give_larger_errors():
    W, bv, bh = rbms(12, 10, 16, seed=5, w_std=1.0)
    exact = log_partition_exact(W, bv, bh)

    def rms_error_and_se(n_temps: int) -> tuple[float, float]:
        est, se = log_partition_ais(W, bv, bh, n_runs=50, n_temps=n_temps,
                                    generator=torch.Generator().manual_seed(6))
        return float((est - exact).pow(2).mean().sqrt()), float(se.mean())

    rough, rough_se = rms_error_and_se(3)
    fine, fine_se = rms_error_and_se(300)
    assert rough > 3 * fine and rough_se > 3 * fine_se, (rough, fine, rough_se, fine_se)


def test_same_generator_same_result_whatever_the_workers():
    W, bv, bh = rbms(12, 10, 6)
    runs = [log_partition_ais(W, bv, bh, n_runs=20, n_temps=50, chunk=2, workers=workers,
                              generator=torch.Generator().manual_seed(7)) for workers in (1, 2, 3)]
    for est, se in runs[1:]:
        assert torch.equal(est, runs[0][0]) and torch.equal(se, runs[0][1])
    other, _ = log_partition_ais(W, bv, bh, n_runs=20, n_temps=50, chunk=2,
                                 generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other, runs[0][0])


def test_caller_thread_count_is_kept():
    before = torch.get_num_threads()
    W, bv, bh = rbms(8, 6, 4)
    log_partition_ais(W, bv, bh, n_runs=10, n_temps=10, chunk=1, workers=2)
    assert torch.get_num_threads() == before


def test_schedule_and_argument_checks():
    assert annealing_schedule(4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    W, bv, bh = rbms(6, 5, 2)
    with pytest.raises(ValueError):
        log_partition_ais(W, bv, bh, n_temps=0)
    with pytest.raises(ValueError):
        log_partition_ais(W, bv, bh, betas=[0.0, 0.5])
    est, se = log_partition_ais(W, bv[:0], bh[:0], n_runs=5, n_temps=5)
    assert est.shape == se.shape == (0,)
    # One run has no spread to estimate an error from.
    est, se = log_partition_ais(W, bv, bh, n_runs=1, n_temps=5)
    assert torch.isfinite(est).all() and torch.isnan(se).all()


# --- expectations under the RBM from the AIS runs' own samples -------------------------------


def exact_expectation(W, bv, bh, f) -> torch.Tensor:
    """E_p[f(v)] [N] by summing p(v) = exp(-F(v)) / Z over every visible state."""
    vs = all_states(W.shape[0])
    W, bv, bh = W.double(), bv.double(), bh.double()
    log_p = torch.stack([-free_energy(W, vs, bv[i], bh[i]) for i in range(len(bv))])  # [N, 2^n_v]
    p = torch.softmax(log_p, dim=1)
    return (p * torch.stack([f(i, vs) for i in range(len(bv))])).sum(1)


def test_weighted_ais_samples_give_the_exact_expectation():
    W, bv, bh = rbms(10, 8, 6, seed=3, w_std=0.8)
    targets = (torch.rand(6, 10, generator=torch.Generator().manual_seed(4)) < 0.3).double()

    def overlap(i, v):  # the share of frame i's target notes a sample has
        return (v * targets[i]).sum(-1) / targets[i].sum().clamp(min=1)

    def statistic(rows, v):  # v holds 200 runs per RBM, RBM by RBM
        t = targets[rows].repeat_interleave(200, 0)
        return (v.double() * t).sum(-1) / t.sum(-1).clamp(min=1)

    est = ais(W, bv, bh, n_runs=200, n_temps=300, generator=torch.Generator().manual_seed(5),
              chunk=4, statistic=statistic)
    exact = exact_expectation(W, bv, bh, overlap)
    assert est.mean.shape == (6,) and est.ess.shape == (6,)
    assert bool((est.ess > 20).all() and (est.ess <= 200 + 1e-9).all())
    torch.testing.assert_close(est.mean, exact, rtol=0, atol=0.05)
    # and the log Z estimates are those of log_partition_ais with the same seed
    log_z, _ = log_partition_ais(W, bv, bh, n_runs=200, n_temps=300, generator=torch.Generator().manual_seed(5), chunk=4)
    torch.testing.assert_close(est.log_z, log_z)

