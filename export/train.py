"""`rnnrbm-train`: train an RNN-RBM on a bundled dataset or a folder of MIDI files.

Writes into --out: last.safetensors (+ .json, + .state.safetensors for --resume) every
epoch and on Ctrl+C, and best.safetensors (+ .json), the checkpoint best on valid.

Several GPUs or machines: `torchrun --nproc-per-node N -m rnnrbm_export.train ...` trains
one model with N processes (DDP); --batch-size stays the global batch
(docs/distributed-training.md)."""

from __future__ import annotations

import itertools
import json
import math
import shlex
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rnnrbm_live.midi.datasets import DATASETS, dataset_frames_per_beat, load_split
from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.keys import transpose

from . import batching, distributed
from .checkpoint import load_checkpoint, resolve, save_checkpoint
from .distributed import StopSignal, World
from .model import RNNRBM, RNNRBMConfig
from .piece_noise import PieceNoise
from .train_settings import OPTIMIZERS, SELECTS, TrainSettings, parse_args
from .train_state import flat_optimizer_state, load_optimizer_state, read_resume_point
from .uniforms import Uniforms

def model_config(s: TrainSettings, frames_per_beat: int) -> RNNRBMConfig:
    return RNNRBMConfig(n_hidden=s.hidden, n_recurrent=s.recurrent, cd_k=s.cd_k, gibbs_steps=s.gibbs_steps,
                        learn_u0=s.learn_u0, init_recurrent_std=s.init_recurrent_std,
                        frames_per_beat=frames_per_beat, dataset=s.data,
                        transposed_to="C major/minor" if (s.data in DATASETS or s.transpose_to_c) else "none")


def fine_tuned(s: TrainSettings, frames_per_beat: int) -> RNNRBM:
    """A model with the weights and sizes of the checkpoint --init-from names, and this
    run's CD and sampling settings."""
    path = resolve(s.init_from)
    start, _ = load_checkpoint(path)
    c = start.config
    if c.frames_per_beat != frames_per_beat:
        raise UserError(f"--init-from {path}: its grid is {c.frames_per_beat} frames per beat, "
                        f"the data's is {frames_per_beat}; fine-tune on data of the same grid")
    config = replace(model_config(s, frames_per_beat), n_visible=c.n_visible, n_hidden=c.n_hidden + s.grow_hidden,
                     n_recurrent=c.n_recurrent, learn_u0=c.learn_u0, lowest_pitch=c.lowest_pitch)
    model = RNNRBM(config)
    model.load_state_dict(grown_state(start, model))
    return model


def grown_state(start: RNNRBM, fresh: RNNRBM) -> dict[str, torch.Tensor]:
    """start's weights with hidden units added up to fresh's number, each RBM's distribution over
    frames almost unchanged. A new unit's weights (W, Wuh) start from `fresh`'s small random
    ones, not zero, so the new units can tell themselves apart, and its bias at 0, where it
    learns fastest. Summed out, it adds softplus(v W_j) = log 2 + v W_j / 2 + O((v W_j)^2)
    to every frame's log-probability: the constant cancels in the normalisation, and bv
    takes back the linear part."""
    state = start.state_dict()
    extra = fresh.config.n_hidden - start.config.n_hidden
    if extra == 0:
        return state
    new = fresh.state_dict()
    state["W"] = torch.cat([state["W"], new["W"][:, -extra:]], 1)
    state["Wuh"] = torch.cat([state["Wuh"], new["Wuh"][:, -extra:]], 1)
    state["bh"] = torch.cat([state["bh"], torch.zeros(extra)])
    state["bv"] = state["bv"] - new["W"][:, -extra:].sum(1) / 2
    return state


def make_optimizer(s: TrainSettings, params) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    raise UserError(f"--optimizer {s.optimizer}: unknown optimizer; use {' or '.join(OPTIMIZERS)}")


def learning_rate(s: TrainSettings, epoch: int, plateau_halvings: int) -> float:
    if s.lr_schedule == "cosine":
        return s.lr * 0.5 * (1 + math.cos(math.pi * epoch / max(1, s.epochs)))
    if s.lr_schedule == "plateau":
        return s.lr * 0.5 ** plateau_halvings
    return s.lr


class _Losses(torch.nn.Module):
    """The model's training costs behind one forward(), so that DistributedDataParallel,
    which hooks forward(), averages the gradients of whichever cost a step uses."""

    def __init__(self, model: RNNRBM):
        super().__init__()
        self.model = model

    def forward(self, which: str, v: torch.Tensor, mask: torch.Tensor, uniforms=None):
        if which == "rnn":  # the paper's RNN pretraining: next-frame cross-entropy
            cost = self.model.next_frame_xent(v, mask)
            monitor = cost.detach()
        else:
            cost, monitor = self.model.cd_loss(v, mask, uniforms=uniforms)
        # Every parameter in the graph, with a zero gradient where this cost does not reach
        # it (a one-frame batch's RNN, pretraining's other half): DDP then needs no search
        # for unused parameters on every step.
        unused = sum(p.sum() for p in self.model.parameters() if p.requires_grad)
        return cost + 0.0 * unused, monitor


class Trainer:
    """One training run: data, model, optimizer, the valid check and the checkpoints.
    Under torchrun every rank holds one, trains its share of each batch, and only rank 0
    writes."""

    def __init__(self, s: TrainSettings, command: str = "", world: World = World(),
                 device: torch.device | None = None, stop: StopSignal | None = None):
        self.s = s
        self.command = command  # how this run was started, kept in every checkpoint
        self.out = Path(s.out)
        self.world = world
        self.device = device or distributed.start(world, s.device)
        self.stop = stop or StopSignal(world, self.device)
        if s.threads:
            torch.set_num_threads(s.threads)
        if s.select not in SELECTS:
            raise UserError(f"--select {s.select}: unknown measure; use {' or '.join(SELECTS)}")
        if s.batch_size < world.size:
            raise UserError(f"--batch-size {s.batch_size}: smaller than the {world.size} processes; "
                            f"give each at least one sequence per update")
        if s.grow_hidden < 0:
            raise UserError(f"--grow-hidden {s.grow_hidden}: give 0 or a number of hidden units to add")
        if s.grow_hidden and not s.init_from:
            raise UserError(f"--grow-hidden {s.grow_hidden}: grows the model --init-from names; name one, "
                            f"or give --hidden for a new model")
        fpb = dataset_frames_per_beat(s.data) if s.data in DATASETS else 2
        self._load_data(fpb)
        torch.manual_seed(s.seed)
        self.model = (fine_tuned(s, fpb) if s.init_from else RNNRBM(model_config(s, fpb))).to(self.device)
        self.losses = _Losses(self.model)
        if world.size > 1:  # broadcasts rank 0's weights, then averages every step's gradients
            self.losses = torch.nn.parallel.DistributedDataParallel(self.losses)
        self.uniforms = Uniforms(self.device, [s.seed, 5, world.rank])  # pretraining's noise
        self.opt = make_optimizer(s, [p for p in self.model.parameters() if p.requires_grad])
        self.epoch = 0
        self.history: list[dict] = []
        self.best = {"valid_ll": -math.inf, "valid_acc": -math.inf, "epoch": None}
        self.bad_checks = 0
        self.halvings = 0

    def _load_data(self, fpb: int) -> None:
        s, w = self.s, self.world
        load = dict(frames_per_beat=None if s.data in DATASETS else fpb, transpose_to_c=s.transpose_to_c,
                    progress=w.main, report=w.main, mapped=True)
        if w.local_rank:  # the first rank of each machine parses and caches; the others then read its cache
            distributed.barrier()
        self.train_set = load_split(s.data, "train", augment_all_keys=s.augment_all_keys, **load)
        self.valid_set = load_split(s.data, "valid", **load)
        if not w.local_rank:
            distributed.barrier()
        if s.valid_max_seqs:
            self.valid_set = self.valid_set[:s.valid_max_seqs]
        if s.train_max_seqs:
            self.train_set = self.train_set[:s.train_max_seqs]
        if s.augment_semitones:
            self.train_set = [transpose(x, k) for x in self.train_set
                              for k in range(-s.augment_semitones, s.augment_semitones + 1)]
        self.pieces = batching.chunk(self.train_set, s.seq_len)

    # --- checkpoints ---------------------------------------------------------------------

    def meta(self) -> dict:
        return {"epoch": self.epoch, "train_settings": asdict(self.s), "best": self.best,
                "history": self.history, "command": self.command, "world_size": self.world.size,
                "bad_checks": self.bad_checks}

    def save(self, name: str, with_state: bool) -> None:
        if not self.world.main:
            return
        state = None
        if with_state:
            state = {f"opt.{k}": v for k, v in flat_optimizer_state(self.opt).items()}
            state["rng.uniforms"] = self.uniforms.get_state()
        save_checkpoint(self.out / f"{name}.safetensors", self.model, self.meta(), state)

    def resume(self) -> None:
        """Rank 0 reads out/last.safetensors and sends it to every rank: the run goes on
        with any world size (batches and noise depend on the seed and epoch alone), and
        the other machines need not see rank 0's disk."""
        path = self.out / "last.safetensors"
        payload = [read_resume_point(path) if self.world.main else None]
        if self.world.size > 1:
            torch.distributed.broadcast_object_list(payload, src=0)
        if isinstance(payload[0], str):
            raise UserError(payload[0])
        weights, opt_state, card = payload[0]
        self.model.load_state_dict({k: v.to(self.device) for k, v in weights.items()})
        load_optimizer_state(self.opt, {k: v.to(self.device) for k, v in opt_state.items()})
        self.epoch, self.history, self.best = card["epoch"], card["history"], card["best"]
        self.bad_checks = card.get("bad_checks", 0)
        self.halvings = sum(1 for h in self.history if h.get("halved"))
        if self.world.main:
            tqdm.write(f"resumed {path} at epoch {self.epoch}")

    # --- training ------------------------------------------------------------------------

    def pretrain(self) -> None:
        m, s, w = self.model, self.s, self.world
        if s.pretrain_rbm:
            opt = make_optimizer(s, [m.W, m.bv, m.bh])
            for e in range(s.pretrain_rbm):
                rng = np.random.default_rng([s.seed, 1, e])
                it = batching.frame_shares(self.train_set, s.batch_size * 64, rng, w.rank, w.size, self.device)
                self._run_epoch(it, opt, f"rbm pretrain {e + 1}/{s.pretrain_rbm}", "cd", lambda share: self.uniforms)
        if s.pretrain_rnn:
            opt = make_optimizer(s, [m.Wvu, m.Wuu, m.bu, m.Wuv] + ([m.u0] if m.u0.requires_grad else []))
            for e in range(s.pretrain_rnn):
                rng = np.random.default_rng([s.seed, 2, e])
                it = batching.shares(self.pieces, s.batch_size, rng, w.rank, w.size, self.device)
                self._run_epoch(it, opt, f"rnn pretrain {e + 1}/{s.pretrain_rnn}", "rnn", lambda share: None)

    def _run_epoch(self, shares, opt, desc: str, which: str, noise) -> dict:
        total = n = 0.0
        bar = tqdm(shares, desc=desc, leave=False, unit="batch", dynamic_ncols=True, disable=not self.world.main)
        for step in bar:
            cost, monitor = self.losses(which, step.v, step.mask, uniforms=noise(step))
            opt.zero_grad(set_to_none=True)
            (cost * step.weight).backward()  # DDP averages over ranks: the whole batch's gradient
            if self.s.clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.clip)
            opt.step()
            frames = float(step.mask.sum())
            total += float(monitor.detach()) * frames
            n += frames
            bar.set_postfix(cost=f"{float(cost.detach()):.3f}", xent=f"{total / max(n, 1):.3f}")
            if self.stop.requested():
                raise KeyboardInterrupt
        total, n = distributed.sums([total, n], self.device)
        return {"xent": total / max(n, 1), "frames": n}

    def _piece_noise(self, batch_counter):
        def noise(step: batching.Share) -> PieceNoise:
            return PieceNoise(self.device, self.s.seed, self.epoch, next(batch_counter), step.pieces,
                              step.lengths, step.rows, step.global_shape)
        return noise

    def check_valid(self) -> dict:
        """AIS on this rank's share of valid, summed over ranks frame by frame."""
        from .measures import evaluate  # AIS lives there; imported late, it is heavy

        mine = self.world.share(self.valid_set)
        ll = acc = frames = 0.0
        if mine:
            r = evaluate(self.model, mine, n_runs=self.s.valid_runs, n_temps=self.s.valid_temps, acc_samples=0,
                         seed=self.s.seed + self.world.rank, device=str(self.device), progress=False)
            ll, acc, frames = r["ll"] * r["frames"], r["acc"] * r["frames"], r["frames"]
        ll, acc, frames = distributed.sums([ll, acc, frames], self.device)
        return {"valid_ll": ll / frames, "valid_acc": acc / frames}

    def run(self) -> Path:
        if self.s.resume:
            self.resume()
        else:
            self.pretrain()
        while self.epoch < self.s.epochs:
            lr = learning_rate(self.s, self.epoch, self.halvings)
            for g in self.opt.param_groups:
                g["lr"] = lr
            rng = np.random.default_rng([self.s.seed, 0, self.epoch])
            t0 = time.perf_counter()
            w = self.world
            it = batching.shares(self.pieces, self.s.batch_size, rng, w.rank, w.size, self.device)
            stats = self._run_epoch(it, self.opt, f"epoch {self.epoch + 1}/{self.s.epochs}", "cd",
                                    self._piece_noise(itertools.count()))
            self.epoch += 1
            row = {"epoch": self.epoch, "lr": lr, "train_xent": stats["xent"],
                   "frames_per_s": stats["frames"] / (time.perf_counter() - t0)}
            if self.epoch % self.s.valid_every == 0 or self.epoch == self.s.epochs:
                row.update(self._valid_and_keep_best())
            self.history.append(row)
            if w.main:
                tqdm.write(json.dumps(row))
            self.save("last", with_state=True)
            if self.s.patience and self.bad_checks >= self.s.patience:
                if w.main:
                    tqdm.write(f"no better valid {self.s.select.upper()} in {self.bad_checks} checks: "
                               f"stopping at epoch {self.epoch}")
                break
        return self.out / "best.safetensors"

    def _valid_and_keep_best(self) -> dict:
        row = self.check_valid()
        key = f"valid_{self.s.select}"
        if row[key] > self.best.get(key, -math.inf):  # cards from before --select lack valid_acc
            self.best = {"valid_ll": row["valid_ll"], "valid_acc": row["valid_acc"], "epoch": self.epoch}
            self.bad_checks = 0
            self.save("best", with_state=False)
        else:
            self.bad_checks += 1
            if self.s.lr_schedule == "plateau" and self.bad_checks % max(1, self.s.patience // 2 or 2) == 0:
                self.halvings += 1
                row["halved"] = True
        return row


def main(argv: list[str] | None = None) -> int:
    code, joined = _train(argv)
    if joined:
        # Everything is saved and the process group is gone; leave without C++ teardown,
        # where gloo's threads abort a rank now and then ("terminate called without an
        # active exception") when the ranks exit together.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _train(argv: list[str] | None) -> tuple[int, bool]:
    """Train; the exit status, and whether this process was one rank of a process group."""
    settings = parse_args(argv, __doc__)
    trainer, world, joined = None, World(), False
    try:
        world = distributed.from_environment()
        device = distributed.start(world, settings.device)
        joined = world.size > 1
        # A scheduler's SIGTERM saves like Ctrl+C does (and Ctrl+C works in a background job,
        # where the shell started us with SIGINT ignored).
        stop = StopSignal(world, device)
        trainer = Trainer(settings, "rnnrbm-train " + shlex.join(sys.argv[1:] if argv is None else argv),
                          world, device, stop)
        best = trainer.run()
        distributed.barrier()  # leave together: a rank whose peers are gone aborts in gloo
    except UserError as e:
        if world.main:
            print(f"rnnrbm-train: {e}", file=sys.stderr)
        return 2, joined
    except KeyboardInterrupt:
        if trainer is not None and world.main:
            try:
                trainer.save("last", with_state=True)
            except UserError as e:  # a full disk: the last good checkpoint is still there
                print(f"\nrnnrbm-train: interrupted; {e}", file=sys.stderr)
                return 130, joined
            print(f"\ninterrupted: saved {trainer.out / 'last.safetensors'} at epoch {trainer.epoch}; "
                  f"continue with --resume", file=sys.stderr)
        if trainer is not None:
            distributed.barrier()  # every rank stopped at the same step: leave together
        return 130, joined
    finally:
        distributed.stop()
    b = trainer.best
    if world.main:
        print(f"best on valid ({settings.select}): epoch {b['epoch']}, LL {b['valid_ll']:.3f}, "
              f"ACC {b['valid_acc']:.2f}; {best}")
    return 0, joined


if __name__ == "__main__":
    sys.exit(main())
