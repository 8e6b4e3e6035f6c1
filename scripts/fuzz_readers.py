"""The long fuzz campaign over every reader of user files (targets: tests/fuzz_targets.py).

    .venv/bin/python scripts/fuzz_readers.py --minutes 20 [--coverage]

Runs each target with hypothesis for its share of the time (random, not derandomized),
prints a table (target, inputs, seconds, crashes) and, with --coverage and the coverage
package installed, the line coverage of the reader modules. A crash is any exception other
than the one-line UserError; its shrunk input is written to tests/fuzz_corpus/<kind>/ so the
suite replays it (tests/test_fuzz_readers.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

READERS = ["rnnrbm_live/midi/scanner.py", "rnnrbm_live/midi/reader.py",
           "rnnrbm_live/midi/datasets.py", "rnnrbm_live/model/card.py",
           "export/checkpoint.py"]


def _seeds(folder: Path) -> dict:
    import torch
    from conftest import _export_test_model
    from rnnrbm_export.checkpoint import save_checkpoint
    from rnnrbm_export.model import RNNRBM, RNNRBMConfig
    onnx = _export_test_model(folder)
    torch.manual_seed(0)
    save_checkpoint(folder / "last.safetensors", RNNRBM(RNNRBMConfig(n_hidden=8, n_recurrent=6)),
                    {"epoch": 2, "history": []},
                    {"opt.step": torch.zeros(1), "rng.uniforms": torch.arange(3)})
    return {"onnx": onnx.read_bytes(), "card": Path(str(onnx) + ".json").read_bytes(),
            "ckpt": tuple((folder / n).read_bytes() for n in
                          ("last.safetensors", "last.json", "last.state.safetensors"))}


def _targets(seeds: dict):
    """name -> (corpus kind, function(data, folder) that draws and runs one input)."""
    import fuzz_targets as ft
    from hypothesis import strategies as st
    midi = ft.midi_seeds()

    def midi_file(data, folder):
        raw = data.draw(ft.mutated(midi))
        return raw, lambda: ft.read_midi_bytes(raw, folder)

    def dataset(data, folder):
        files = data.draw(st.lists(ft.mutated(midi), min_size=1, max_size=12))
        cache = data.draw(ft.mutated(midi + [b"PK\x03\x04"]))

        def run():
            ft.read_midi_folder(files, folder)
            ft.damage_roll_cache(cache, folder)
        return cache, run

    def model_card(data, folder):
        raw = data.draw(st.one_of(ft.card_edits(json.loads(seeds["card"])),
                                  ft.mutated([seeds["card"]])))
        return raw, lambda: ft.load_model_files(seeds["onnx"], raw, folder)

    def onnx(data, folder):
        raw = data.draw(ft.mutated([seeds["onnx"]]))
        return raw, lambda: ft.load_model_files(raw, seeds["card"], folder)

    weights, card, state = seeds["ckpt"]

    def ckpt_card(data, folder):
        raw = data.draw(st.one_of(ft.card_edits(json.loads(card)), ft.mutated([card])))
        return raw, lambda: ft.load_checkpoint_files(weights, raw, state, folder)

    def ckpt_state(data, folder):
        raw = data.draw(ft.mutated([state]))
        return raw, lambda: ft.load_checkpoint_files(weights, card, raw, folder)

    def ckpt_weights(data, folder):
        raw = data.draw(ft.mutated([weights]))
        return raw, lambda: ft.load_checkpoint_files(raw, card, state, folder)

    return {"midi file": ("midi", midi_file), "folder dataset + cache": ("dataset", dataset),
            "model card": ("model_card", model_card), "onnx graph": ("onnx", onnx),
            "checkpoint card": ("checkpoint_card", ckpt_card),
            "training state": ("state", ckpt_state),
            "checkpoint weights": ("checkpoint_weights", ckpt_weights)}


def _campaign(name: str, kind: str, draw_and_run, seconds: float) -> tuple[int, int]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    count = [0]
    crashes: list[bytes] = []
    written = 0
    deadline = time.monotonic() + seconds

    @settings(max_examples=100, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(st.data())
    def one(data):  # a batch of 100 random inputs; batches run until the time is up
        count[0] += 1
        with tempfile.TemporaryDirectory() as folder:
            raw, run = draw_and_run(data, Path(folder))
            try:
                run()
            except Exception:
                crashes.append(raw)
                raise

    while time.monotonic() < deadline:
        try:
            one()
        except Exception as e:  # a crash: keep the shrunk input (the last one raised)
            out = ROOT / "tests" / "fuzz_corpus" / kind
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"found-{int(time.time())}-{len(crashes)}.bin"
            path.write_bytes(crashes[-1])
            written += 1
            print(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:120]} -> {path}",
                  flush=True)
    return count[0], written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--coverage", action="store_true",
                   help="measure line coverage of the readers (pip install coverage)")
    args = p.parse_args()
    cov = None
    if args.coverage:
        import coverage
        cov = coverage.Coverage(data_file=None, include=[str(ROOT / r) for r in READERS])
        cov.start()
    with tempfile.TemporaryDirectory() as folder:
        targets = _targets(_seeds(Path(folder)))
        share = args.minutes * 60 / len(targets)
        rows = []
        for name, (kind, fn) in targets.items():
            start = time.monotonic()
            inputs, crashes = _campaign(name, kind, fn, share)
            rows.append((name, inputs, time.monotonic() - start, crashes))
    print(f"{'target':<24} {'inputs':>8} {'seconds':>8} {'crash files':>11}")
    for name, inputs, seconds, crashes in rows:
        print(f"{name:<24} {inputs:>8} {seconds:>8.0f} {crashes:>11}")
    print(f"{'total':<24} {sum(r[1] for r in rows):>8} {sum(r[2] for r in rows):>8.0f}")
    if cov is not None:
        cov.stop()
        print()
        cov.report(show_missing=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
