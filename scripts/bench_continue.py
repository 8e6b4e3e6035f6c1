"""Time `continue`: 64 variations of 32 bars in one batch beside one variation at a time,
on the CPU and, when onnxruntime's CUDA provider works here, on the GPU.

Each time is a whole continue_midi call without writing files (model load, reading the
primer, listening to it, generating), as a user waits for it.
Run: python scripts/bench_continue.py [--model nottingham|PATH] [--primer FILE.mid]
     [--variations 64] [--bars 32] [--threads 1 2]
Without --model and without a bundled nottingham, a random model of the default sizes
(88/150/100, 25 Gibbs steps) is exported to a temporary folder first (needs torch)."""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import mido
import onnxruntime as ort

from rnnrbm_live.bundled import bundled_path
from rnnrbm_live.offline.continuation import continue_midi
from rnnrbm_live.model.runners import cuda_unavailable_reason


def random_model(folder: Path) -> str:
    """A random model with the tutorial's sizes: speed depends on sizes, not on training."""
    import torch

    from rnnrbm_export.model import RNNRBM, RNNRBMConfig
    from rnnrbm_export.onnx_export import export_model

    torch.manual_seed(0)
    model = RNNRBM(RNNRBMConfig(init_std=0.5, init_recurrent_std=0.3, dataset="random"))
    export_model(model, {}, folder / "random")
    return str(folder / "random")


def c_major_primer(path: Path, bars: int = 4) -> Path:
    """`bars` bars of 4/4 at 100 bpm: a C major scale in eighths over whole-note chords."""
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100))])
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    for bar in range(bars):
        chord = (48, 52, 55) if bar % 2 == 0 else (43, 47, 50)
        for p in chord:
            track.append(mido.Message("note_on", note=p, velocity=80, time=0))
        for p in scale if bar % 2 == 0 else scale[::-1]:
            track.append(mido.Message("note_on", note=p, velocity=90, time=0))
            track.append(mido.Message("note_off", note=p, time=240))
        for p in chord:
            track.append(mido.Message("note_off", note=p, time=0))
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(path)
    return path


def timed(primer: Path, model: str, device: str, variations: int, bars: int,
          threads: int, batched: bool) -> tuple[float, int, str]:
    """Seconds for `variations` continuations, all in one batch or one call each; the
    frames of one continuation; the provider that ran them."""
    t0 = time.perf_counter()
    calls = [(variations, 0)] if batched else [(1, seed) for seed in range(variations)]
    for batch, seed in calls:
        result = continue_midi(primer, bars=bars, variations=batch, seed=seed, model=model,
                               device=device, threads=threads)
    return time.perf_counter() - t0, result.rolls.shape[1], result.provider


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--primer", type=Path, default=None)
    p.add_argument("--variations", type=int, default=64)
    p.add_argument("--bars", type=int, default=32)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or ("nottingham" if bundled_path("nottingham") else
                               random_model(folder))
        primer = args.primer or c_major_primer(folder / "primer.mid")
        reason = cuda_unavailable_reason()
        devices = ["cpu"] + (["cuda"] if reason is None else [])
        print(f"model {model}, primer {primer.name}, {args.variations} variations x "
              f"{args.bars} bars; onnxruntime {ort.__version__}, "
              f"{platform.processor() or platform.machine()}")
        if reason is not None:
            print(f"no gpu rows: {reason}")
        continue_midi(primer, bars=1, variations=1, seed=0, model=model)  # warm caches
        header = f"{'device':<6} {'threads':>7} {'how':<22} {'seconds':>9} " \
                 f"{'var-frames/s':>13} {'speed-up':>9}"
        print(header)
        print("-" * len(header))
        for device in devices:
            for threads in (args.threads if device == "cpu" else [1]):
                one_at_a_time = None
                for batched in (False, True):
                    seconds, frames, provider = timed(primer, model, device,
                                                      args.variations, args.bars, threads,
                                                      batched)
                    frames *= args.variations
                    how = f"batch of {args.variations}" if batched else \
                        f"{args.variations} x batch of 1"
                    one_at_a_time = one_at_a_time or seconds
                    print(f"{device:<6} {threads:>7} {how:<22} {seconds:>9.2f} "
                          f"{frames / seconds:>13,.0f} {one_at_a_time / seconds:>8.1f}x"
                          + ("" if provider.lower().startswith(device) else
                             f"  (ran on {provider})"))


if __name__ == "__main__":
    main()
