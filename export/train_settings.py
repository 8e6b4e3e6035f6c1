"""rnnrbm-train's settings: one dataclass, a comment per field that is also its --help."""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import asdict, dataclass

from rnnrbm_live.midi.datasets import DATASETS

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine", "plateau")
SELECTS = ("ll", "acc")


@dataclass
class TrainSettings:
    data: str = "jsb_chorales"  # a bundled dataset name or a folder of MIDI files
    out: str = "runs/jsb"  # folder for checkpoints
    epochs: int = 200  # passes over the training split (pretraining not counted)
    batch_size: int = 8  # sequences (or chunks) per update, over all processes together (torchrun)
    seq_len: int = 0  # cut sequences into chunks of this many frames; 0 = whole sequences
    lr: float = 1e-3  # learning rate
    optimizer: str = "adam"  # adam | sgd (sgd with lr 1e-3, batch 1, seq_len 100 is the tutorial)
    momentum: float = 0.0  # sgd momentum
    weight_decay: float = 0.0  # L2 penalty on every parameter (decoupled for adam: AdamW)
    clip: float = 0.0  # clip the gradient's global norm to this; 0 = no clipping
    lr_schedule: str = "constant"  # constant | cosine | plateau (halve after `patience`/2 bad checks)
    cd_k: int = 15  # Gibbs steps of the CD negative phase
    hidden: int = 150  # RBM hidden units
    recurrent: int = 100  # RNN units
    gibbs_steps: int = 25  # Gibbs steps per generated frame (the exported K)
    init_recurrent_std: float = 1e-4  # std of the RNN weights at init (tutorial 1e-4)
    learn_u0: bool = False  # learn the initial state
    pretrain_rbm: int = 0  # epochs of RBM pretraining on frames without history (the paper's)
    pretrain_rnn: int = 0  # epochs of RNN pretraining on next-frame cross-entropy (the paper's)
    transpose_to_c: bool = False  # folders: estimate each piece's key and move it to C
    augment_all_keys: bool = False  # train on all 12 transpositions of every piece
    augment_semitones: int = 0  # also train on every piece moved by -N..+N semitones (regularises)
    valid_every: int = 5  # epochs between checks on valid (quick AIS)
    valid_runs: int = 10  # AIS runs per frame for the check on valid
    valid_temps: int = 100  # AIS temperatures for the check on valid
    valid_max_seqs: int = 0  # check on the first N valid sequences only; 0 = all
    train_max_seqs: int = 0  # train on the first N training sequences only (quick checks); 0 = all
    patience: int = 0  # stop after this many checks without a better valid measure; 0 = never
    select: str = "ll"  # ll | acc: the valid measure that picks best.safetensors (and counts patience)
    init_from: str = ""  # start from this checkpoint's weights and sizes (fine-tuning); new optimizer
    grow_hidden: int = 0  # with --init-from: add this many RBM hidden units, started so the model plays as before
    seed: int = 1234  # same seed, same device: same result
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads; 0 = torch's default
    resume: bool = False  # continue from out/last.safetensors



def _field_comments() -> dict[str, str]:
    """Each TrainSettings field's comment, which is its --help text: one place to say it."""
    source = inspect.getsource(TrainSettings)
    return {m[1]: m[2].strip().replace("%", "%%") for m in re.finditer(r"^\s+(\w+): [^#\n]*# (.*)$", source, re.MULTILINE)}


# Choices shown in --help beside the option (the checks stay in the code, one line each).
_METAVARS = {"data": "NAME|FOLDER", "optimizer": "{" + ",".join(OPTIMIZERS) + "}",
             "lr_schedule": "{" + ",".join(LR_SCHEDULES) + "}", "select": "{" + ",".join(SELECTS) + "}",
             "device": "{auto,cpu,cuda}"}


def parse_args(argv: list[str] | None, description: str | None = None) -> TrainSettings:
    p = argparse.ArgumentParser(prog="rnnrbm-train", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainSettings()
    helps = _field_comments()
    helps["data"] += f"; bundled: {', '.join(DATASETS)}"
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, action="store_true", default=value, help=helps.get(name))
        else:
            p.add_argument(flag, type=type(value), default=value, metavar=_METAVARS.get(name),
                           help=f"{helps.get(name, '')} (default: {value!r})")
    return TrainSettings(**vars(p.parse_args(argv)))
