"""What "ACC" can mean, side by side on valid frames: why the paper's Nottingham ACC (75.4)
sits far above what rnnrbm-eval measures for a model with the paper's LL.

rnnrbm-eval's ACC is the expected frame accuracy TP / (TP + FP + FN) of a sample of each
frame's RBM given the true history, averaged over frames. The paper cites Bay et al. (2009)
for ACC without saying how a prediction was drawn from the RBM. This script measures, on
the same frames and the same samples:
- "sample": a draw of the RBM (rnnrbm-eval's measure);
- "marginals > 0.5": the frame of every note whose probability is over one half (a
  deterministic prediction, close to the RBM's mode on these nearly factorial frames);
- "previous frame": no model, the frame before repeated;
each averaged per frame (rnnrbm-eval) and pooled over the split (Bay et al.'s sum of TP over
the sum of TP + FP + FN).

Samples come from Gibbs chains started at the true previous frame (on Nottingham they settle
in 25 steps and agree with the AIS runs' weighted samples: docs/results.md); the marginals
are the samples' means.

    python scripts/acc_definitions.py --checkpoint checkpoints/nottingham --data nottingham --seqs 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnnrbm_export.checkpoint import load_checkpoint  # noqa: E402
from rnnrbm_export.frames import frame_accuracy, frame_biases  # noqa: E402
from rnnrbm_export.played import previous_frames  # noqa: E402
from rnnrbm_export.uniforms import Uniforms  # noqa: E402
from rnnrbm_live.midi.datasets import load_split  # noqa: E402


def accuracies(prediction: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(mean over frames, pooled over frames) in %."""
    acc, tp, union = frame_accuracy(prediction, target)
    return 100 * float(acc.mean()), 100 * float(tp.sum() / union.sum().clamp(min=1))


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint or training folder")
    p.add_argument("--data", default="nottingham")
    p.add_argument("--seqs", type=int, default=8, help="first N valid sequences")
    p.add_argument("--samples", type=int, default=50, help="chains per frame")
    p.add_argument("--gibbs", type=int, default=200, help="steps per chain")
    a = p.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(a.checkpoint)[0]
    sequences = load_split(a.data, "valid")[:a.seqs]
    v, bv, bh = frame_biases(model, sequences)
    previous = previous_frames(sequences)
    n, s = len(v), a.samples
    x = model.gibbs_chain(previous.repeat_interleave(s, 0), bv.repeat_interleave(s, 0),
                          bh.repeat_interleave(s, 0), a.gibbs, Uniforms("cpu", 7))
    target = v.repeat_interleave(s, 0)
    marginals = x.view(n, s, -1).mean(1)
    rows = [("sample (rnnrbm-eval's ACC)", accuracies(x, target)),
            ("marginals > 0.5", accuracies((marginals > 0.5).float(), v)),
            ("previous frame (no model)", accuracies(previous, v))]
    print(f"{a.data} valid, first {a.seqs} sequences ({n} frames); {a.checkpoint}; "
          f"{s} chains of {a.gibbs} Gibbs steps from the previous frame per frame")
    print("| prediction | ACC, mean over frames | ACC, pooled (Bay et al.) |")
    print("|---|---|---|")
    for name, (mean, pooled) in rows:
        print(f"| {name} | {mean:.1f} | {pooled:.1f} |")


if __name__ == "__main__":
    main()
