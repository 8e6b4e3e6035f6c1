#!/usr/bin/env python
"""Per-frame cost of the RNN-RBM step: torch eager (the baseline), the bare onnxruntime
run of the exported graph, and a StepSession step (noise generation + run + frame copy),
at batch 1 (latency: median and p99) and batches 64 and 1024 (frames per second).

    python scripts/bench_step.py                  # a random 88/150/100 model: v1 (K=25, both graphs), v2
    python scripts/bench_step.py --model m.onnx   # an exported model (no torch needed)

Prints a table; it is a measurement, not a test. Issue goal: CPU, one thread, batch 1,
median <= 0.10 ms and p99 <= 0.20 ms per frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnrbm_live.model.card import StepModel, load_model  # noqa: E402
from rnnrbm_live.model.runners import cuda_unavailable_reason, session_options  # noqa: E402
from rnnrbm_live.model.session import StepSession  # noqa: E402

BATCHES = (1, 64, 1024)


def timings(fn, calls: int, warmup: int = 20) -> np.ndarray:
    """Seconds per call of fn()."""
    for _ in range(warmup):
        fn()
    out = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out


def calls_for(batch: int, base: int) -> int:
    return max(10, base // batch) if batch > 1 else base


def row(name: str, per_batch: dict[int, np.ndarray]) -> str:
    cells = []
    for b in BATCHES:
        t = per_batch.get(b)
        if t is None:
            cells.append(f"{'-':>22}" if b == 1 else f"{'-':>16}")
        elif b == 1:
            cells.append(f"{np.median(t) * 1e6:9.1f} {np.percentile(t, 99) * 1e6:9.1f} us ")
        else:
            cells.append(f"{b / np.median(t):14,.0f}  ")
    return f"{name:50s}" + "".join(cells)


def bare_run(model: StepModel, batch: int, threads: int, provider: str = "CPUExecutionProvider"):
    """run_with_iobinding on fixed numpy buffers: the graph alone, noise drawn once."""
    session = ort.InferenceSession(str(model.onnx_path), session_options(threads), providers=[provider])
    rng = np.random.default_rng(0)
    previous = {"v_prev": np.zeros((batch, model.n_visible), np.float32)} if model.takes_previous else {}
    buffers = {"u_prev": np.tile(model.u0, (batch, 1)), **previous,
               "noise": rng.random((batch, *model.noise_shape), dtype=np.float32),
               "clamp_mask": np.zeros((batch, model.n_visible), np.float32),
               "clamp_value": np.zeros((batch, model.n_visible), np.float32),
               "temperature": np.ones((batch, 1), np.float32),
               "v": np.empty((batch, model.n_visible), np.float32),
               "u": np.empty((batch, model.n_recurrent), np.float32)}
    binding = session.io_binding()
    for name, array in buffers.items():
        value = ort.OrtValue.ortvalue_from_numpy(array)
        (binding.bind_ortvalue_output if name in ("v", "u") else binding.bind_ortvalue_input)(name, value)
    return lambda: session.run_with_iobinding(binding)


def bench_model(label: str, model: StepModel, threads: int, steps: int) -> list[str]:
    bare = {b: timings(bare_run(model, b, threads), calls_for(b, steps)) for b in BATCHES}
    sessions = {b: StepSession(model, batch=b, device="cpu", seed=0, threads=threads) for b in BATCHES}
    stepped = {b: timings(sessions[b].step, calls_for(b, steps)) for b in BATCHES}
    noise = {b: timings(lambda r=sessions[b]._runner: r._rng.random(out=r.noise, dtype=np.float32),
                        calls_for(b, steps)) for b in BATCHES}
    return [row(f"ort cpu, bare run: {label}", bare), row("  StepSession.step (noise + run + frame)", stepped),
            row("    of which noise generation (numpy)", noise)]


def bench_cuda(model: StepModel, steps: int) -> list[str]:
    reason = cuda_unavailable_reason()
    if reason is not None:
        return [f"cuda: none available here ({reason}); no gpu rows"]
    sessions = {b: StepSession(model, batch=b, device="cuda", seed=0) for b in BATCHES}
    if any(s.provider != "CUDAExecutionProvider" for s in sessions.values()):
        return [f"cuda: the session fell back to the cpu ({sessions[1].describe()})"]
    stepped = {b: timings(sessions[b].step, calls_for(b, steps)) for b in BATCHES}
    return [row("StepSession.step cuda graph (noise on gpu)", stepped)]


def bench_torch(threads: int, steps: int, seed: int = 0):
    """A random default-size model: torch eager timings, and the model to export."""
    import torch

    from rnnrbm_export.model import RNNRBM, RNNRBMConfig

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = RNNRBM(RNNRBMConfig(init_std=0.5, init_recurrent_std=0.05))
    with torch.no_grad():
        model.bh.normal_(0, 1)
        model.bv.normal_(-1, 1)
    c = model.config
    eager = {}
    for b in BATCHES:
        args = (model.u0.expand(b, -1).contiguous(), torch.rand(b, c.gibbs_steps, c.n_hidden + c.n_visible),
                torch.zeros(b, c.n_visible), torch.zeros(b, c.n_visible), torch.ones(b, 1))
        with torch.inference_mode():
            eager[b] = timings(lambda a=args: model.step(*a), calls_for(b, steps // 3))
    return model, eager


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="an exported model (STEM, .onnx or .onnx.json); default: a random one")
    p.add_argument("--steps", type=int, default=3000, help="timed calls at batch 1 (fewer at larger batches)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    lines, models = [], {}
    if args.model:
        models["exported model"] = load_model(args.model)
    else:
        from rnnrbm_export.onnx_export import export_model
        from rnnrbm_export.sampler import DEFAULT_SAMPLER
        from rnnrbm_export.step_graph import GRAPHS

        torch_model, eager = bench_torch(args.threads, args.steps)
        lines.append(row("torch eager model.step (baseline)", eager))
        folder = Path(tempfile.mkdtemp(prefix="rnnrbm-bench-"))
        for graph in GRAPHS:
            paths = export_model(torch_model, {}, folder / graph, graph=graph)
            model = load_model(paths["onnx"])
            models[f"v1 {graph} graph, {model.card['graph']['nodes']} nodes"] = model
        paths = export_model(torch_model, {}, folder / "v2", sampler=DEFAULT_SAMPLER)
        model = load_model(paths["onnx"])
        models[f"v2 {DEFAULT_SAMPLER.label()}, {model.card['graph']['nodes']} nodes"] = model
    first = next(iter(models.values()))
    for label, model in models.items():
        lines += bench_model(label, model, args.threads, args.steps)
    lines += bench_cuda(first, args.steps)

    cpu = platform.processor() or platform.machine()
    print(f"rnnrbm step, {first.n_visible}/{first.n_hidden}/{first.n_recurrent}, K={first.gibbs_steps}; "
          f"{cpu}, {os.cpu_count()} cores, {args.threads} thread(s); onnxruntime {ort.__version__}")
    print(f"{'':50s}{'B=1 median':>10} {'p99':>9}    {'B=64 frames/s':>14}  {'B=1024 frames/s':>16}")
    print("\n".join(lines))
    print("goal (issue): cpu, 1 thread, B=1: median <= 100 us, p99 <= 200 us per frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
