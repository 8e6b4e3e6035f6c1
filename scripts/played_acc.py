#!/usr/bin/env python
"""'ACC, played' alone: what an exported model's sampler plays on a split given the true
history (export/played.py, the measure rnnrbm-eval reports beside LL and ACC), without the
AIS that rnnrbm-eval runs for those. For a sampler changed after a split's AIS was run.

    python scripts/played_acc.py checkpoints/nottingham rnnrbm_live/bundled/models/nottingham.onnx.json \\
        --data nottingham --split test --samples 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnrbm_export.checkpoint import load_checkpoint, resolve  # noqa: E402
from rnnrbm_export.played import played_accuracies, ready, sampler_of  # noqa: E402
from rnnrbm_live.midi.datasets import load_split  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint or training folder (its best)")
    p.add_argument("card", help="the exported model's card (MODEL.onnx.json): its sampler is measured")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="valid", choices=("valid", "test"))
    p.add_argument("--samples", type=int, default=20, help="frames drawn per true frame")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(resolve(a.checkpoint))[0]
    sampler = ready(model, sampler_of(a.card), a.card)
    acc = played_accuracies(model, load_split(a.data, a.split), sampler, samples=a.samples, seed=a.seed)
    print(json.dumps({"data": a.data, "split": a.split, "frames": len(acc), "sampler": sampler.label(),
                      "samples": a.samples, "acc_played": 100 * float(acc.mean()),
                      "acc_played_sem": 100 * float(acc.std() / np.sqrt(len(acc)))}))


if __name__ == "__main__":
    main()
