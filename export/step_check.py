"""The export's self-check: onnxruntime's step against the float32 torch reference
(`RNNRBM.step`, version 1; `RNNRBM.sampler_step`, version 2) on random inputs, telling float-rounding boundary flips from real
disagreements (step_graph.py says why the two cannot agree bit for bit)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from rnnrbm_live.errors import UserError
from rnnrbm_live.model.runners import session_options

from .checkpoint import weights
from .model import RNNRBM
from .sampler import Probe, Sampler, draw, noise_shape
from .step_graph import DEFAULT_OPSET

U_TOLERANCE = 1e-5  # the contract's bound on |u_onnx - u_torch|
BOUNDARY = 2.0 ** -20  # a flip is a boundary case when the noise is this close to its probability
PICK_BOUNDARY = 1e-3  # ... or when two chains' perturbed log weights (float32 sums) are this close
CHECK_BATCHES = (1, 3, 8)
CHECK_FRAMES = 12


class ExportCheckError(UserError):
    """onnxruntime disagrees with the torch reference: the graph is wrong, nothing is written."""


V1_INPUTS = ("u_prev", "noise", "clamp_mask", "clamp_value", "temperature")
V2_INPUTS = ("u_prev", "v_prev", "noise", "clamp_mask", "clamp_value", "temperature")


@torch.no_grad()
def reference_step(model: RNNRBM, feeds: dict[str, np.ndarray],
                   sampler: Sampler | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(v, u) of the float32 torch reference: version 1 (model.step), or version 2 with
    `sampler` (model.sampler_step). A single row is run inside a batch of two: torch's
    batch-1 matmul (MKL gemv) sums in another order than its own batched gemm, so its
    batch-1 rounding is not the reference's function of one row."""
    names = V1_INPUTS if sampler is None else V2_INPUTS
    args = [torch.from_numpy(feeds[name]) for name in names]
    single = args[0].shape[0] == 1
    if single:
        args = [a.expand(2, *a.shape[1:]) for a in args]
    args = [a.contiguous() for a in args]
    v, u = model.step(*args) if sampler is None else model.sampler_step(sampler, *args)
    return v[:1].numpy() if single else v.numpy(), u[:1].numpy() if single else u.numpy()


@torch.no_grad()
def near_boundary(model: RNNRBM, feeds: dict[str, np.ndarray], sampler: Sampler | None = None) -> np.ndarray:
    """Per row, whether the reference's v may flip between two float implementations: a
    sampled unit whose noise lies within BOUNDARY of its probability (in float64), or
    (version 2 "sir") two chains whose perturbed weights are within PICK_BOUNDARY."""
    if sampler is None:
        return decision_margins(model, feeds) < BOUNDARY
    t = {n: torch.from_numpy(feeds[n]).double() for n in V2_INPUTS}
    W = model.W.double()
    bv_t = model.bv.double() + t["u_prev"] @ model.Wuv.double()
    bh_t = model.bh.double() + t["u_prev"] @ model.Wuh.double()
    a = model.proposal.logits(t["u_prev"], t["v_prev"]) if sampler.kind == "guided" else None
    probe = Probe(len(bv_t), sampler.chains)
    draw(sampler, W, bv_t, bh_t, t["v_prev"], t["noise"], t["clamp_mask"], t["clamp_value"], t["temperature"], probe,
         proposal=a)
    return ((probe.units() < BOUNDARY) | (probe.pick < PICK_BOUNDARY)).numpy()


@torch.no_grad()
def decision_margins(model: RNNRBM, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the smallest |noise - probability| over the sampled units of the version 1
    reference chain: a row whose v may flip between two float implementations has one near zero."""
    u_prev, noise, mask, value, temp = (torch.from_numpy(feeds[n]).double() for n in V1_INPUTS)
    m, nh = model, model.config.n_hidden
    W, bh_t = m.W.double(), m.bh.double() + u_prev @ m.Wuh.double()
    bv_t = m.bv.double() + u_prev @ m.Wuv.double()
    held, free, v = mask * value, 1 - mask, mask * value
    margin = torch.full((u_prev.shape[0],), float("inf"), dtype=torch.float64)
    for k in range(noise.shape[1]):
        ph = torch.sigmoid((v @ W + bh_t) / temp)
        margin = torch.minimum(margin, (noise[:, k, :nh] - ph).abs().amin(1))
        h = (noise[:, k, :nh] < ph).double()
        pv = torch.sigmoid((h @ W.T + bv_t) / temp)
        gap = torch.where(free > 0, (noise[:, k, nh:] - pv).abs(), torch.inf)
        margin = torch.minimum(margin, gap.amin(1))
        v = held + free * (noise[:, k, nh:] < pv).double()
    return margin.numpy()


def _check_inputs(rng: np.random.Generator, state: np.ndarray, nv: int, frame: int,
                  noise_shape: tuple[int, ...], v_prev: np.ndarray | None) -> dict[str, np.ndarray]:
    """Random clamps (every fourth frame listens: all units held) and temperatures 0.5..2."""
    b = state.shape[0]
    mask = (rng.random((b, nv)) < 0.25).astype(np.float32)
    if frame % 4 == 3:
        mask[:] = 1  # listening: every unit held
    feeds = {"u_prev": state, "noise": rng.random((b, *noise_shape), dtype=np.float32), "clamp_mask": mask,
             "clamp_value": (rng.random((b, nv)) < 0.3).astype(np.float32),
             "temperature": rng.uniform(0.5, 2.0, (b, 1)).astype(np.float32)}
    if v_prev is not None:
        feeds["v_prev"] = v_prev
    return feeds


def verify_step_graph(model: RNNRBM, onnx_bytes: bytes, gibbs_steps: int, seed: int = 0,
                      batches: tuple[int, ...] = CHECK_BATCHES, frames: int = CHECK_FRAMES,
                      sampler: Sampler | None = None) -> dict:
    """onnxruntime (CPU, the runtime's session options) against the torch reference on
    random inputs; raises ExportCheckError unless v agrees at every row but for boundary
    flips (near_boundary) and u within U_TOLERANCE. Each frame starts both sides from the
    reference's state (and frame), so even a chaotic RNN is checked step by step."""
    session = _check_session(onnx_bytes)
    c = model.config
    nh, nv = c.n_hidden, c.n_visible
    shape = (gibbs_steps, nh + nv) if sampler is None else noise_shape(sampler, nh, nv)
    rng = np.random.default_rng(seed)
    rows = boundary = 0
    max_du = 0.0
    for b in batches:
        state = np.tanh(rng.standard_normal((b, c.n_recurrent)) * 2).astype(np.float32)
        state[: (b + 1) // 2] = model.u0.detach().numpy()
        v_prev = None if sampler is None else (rng.random((b, nv)) < 0.15).astype(np.float32)
        for frame in range(frames):
            feeds = _check_inputs(rng, state, nv, frame, shape, v_prev)
            v_ref, u_ref = reference_step(model, feeds, sampler)
            v, u = _run(session, feeds)
            flipped = (v != v_ref).any(1)
            if flipped.any():
                real = flipped & ~near_boundary(model, feeds, sampler)
                if real.any():
                    raise ExportCheckError(_disagreement(model, "v", int(real.sum()), b, frame))
                boundary += int(flipped.sum())
            gap = np.abs(u - u_ref)[~flipped]  # a flipped row's u follows its other frame
            off = ~(gap <= U_TOLERANCE)  # NaN is off too
            if off.any():
                worst = float(np.where(np.isnan(gap), np.inf, gap).max())
                raise ExportCheckError(_disagreement(model, f"u (by {worst:.2g} > {U_TOLERANCE:g})",
                                                     int(off.any(-1).sum()), b, frame))
            max_du = max(max_du, float(gap.max(initial=0.0)))
            rows += b
            state, v_prev = u_ref, None if sampler is None else v_ref
    return {"rows": rows, "batch_sizes": list(batches), "boundary_flips": boundary, "max_abs_u_diff": max_du}


def _check_session(onnx_bytes: bytes) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(onnx_bytes, session_options(threads=1), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's pybind errors: an opset it does not know, ...
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"onnxruntime {ort.__version__} cannot load the exported graph ({reason}); "
                        f"try --opset {DEFAULT_OPSET}") from None


def _run(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return session.run(["v", "u"], feeds)
    except Exception as e:  # a graph for other sizes or another K refuses the contract's inputs
        reason = str(e).strip().splitlines()[0][:200]
        raise ExportCheckError(f"self-check failed: the graph does not take this model's inputs ({reason}); "
                               f"nothing was written") from None


def _disagreement(model: RNNRBM, what: str, rows: int, batch: int, frame: int) -> str:
    bad = [n for n, t in weights(model).items() if not torch.isfinite(t).all()]
    hint = (f"; the checkpoint has non-finite values in {', '.join(bad)}: its training diverged"
            if bad else "; this is a bug in rnnrbm-export, please report it")
    return (f"self-check failed: onnxruntime and the torch reference disagree on {what} in {rows} of {batch} "
            f"rows (batch {batch}, frame {frame}); nothing was written{hint}")
