"""A running model: B streams of the RNN-RBM, each one frame per `step()`.

`StepSession` owns what the ONNX step graph (step-contract.md) leaves to its caller: the
recurrent state u of every stream, the uniform noise (reproducible from a seed) and the
clamps. Shapes are fixed per session, so every buffer is allocated once and bound to
onnxruntime once (I/O binding); a step only refills the noise and runs the graph.

On a GPU (device "cuda" or "auto") the state never leaves the device: a second, tiny graph
draws the noise there (RandomUniform) and carries u_t over to u_prev, and the step graph is
replayed as a CUDA graph. Its noise comes from the GPU's generator, so a seed reproduces a
run on the same device kind, not across the CPU and the GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rnnrbm_live.errors import UserError
from rnnrbm_live.model.card import StepModel, load_model
from rnnrbm_live.model.runners import initial_state, open_runner


# --- masks: which keys may sound -----------------------------------------------------------

def pitches(n_visible: int = 88, lowest_pitch: int = 21) -> np.ndarray:
    """The MIDI note of every visible unit."""
    return np.arange(n_visible) + lowest_pitch


def scale_lock(pitch_classes: Iterable[int], n_visible: int = 88, lowest_pitch: int = 21) -> np.ndarray:
    """[n_visible] bool, True for the keys whose pitch class (C=0 .. B=11) is allowed."""
    classes = {int(pc) % 12 for pc in pitch_classes}
    return np.isin(pitches(n_visible, lowest_pitch) % 12, sorted(classes))


def pitch_range(low: int, high: int, n_visible: int = 88, lowest_pitch: int = 21) -> np.ndarray:
    """[n_visible] bool, True for the keys from MIDI note `low` to `high`, both included."""
    notes = pitches(n_visible, lowest_pitch)
    return (notes >= low) & (notes <= high)


def constrain(allowed: np.ndarray | None, clamp_mask: np.ndarray | None = None,
              clamp_value: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Player clamps plus a lock: every key that is not `allowed` is held at 0, and the
    keys the player holds keep the player's value, even outside the lock."""
    if allowed is None:
        return clamp_mask, clamp_value
    forbidden = ~np.asarray(allowed, dtype=bool)
    if clamp_mask is None:
        return forbidden, np.zeros_like(forbidden)
    held = np.asarray(clamp_mask) != 0
    value = held & (np.zeros_like(held) if clamp_value is None else np.asarray(clamp_value) != 0)
    return held | forbidden, value


# --- the session ----------------------------------------------------------------------------

class StepSession:
    """B streams of one model, each with its own state, noise and clamps.

    model: a StepModel, a bundled name or a path (see model_card.load_model).
    device: "cpu", "cuda", or "auto" (cuda when onnxruntime can run it, else the cpu and
    `describe()` says why). seed: the noise's seed (None: fresh entropy). threads: the CPU
    provider's intra-op threads. temperature: the default of every stream (> 0).
    """

    def __init__(self, model: StepModel | str | Path, batch: int = 1, device: str = "auto",
                 seed: int | None = None, threads: int = 1, temperature: float = 1.0) -> None:
        self.model = model if isinstance(model, StepModel) else load_model(model)
        if not isinstance(batch, (int, np.integer)) or batch < 1:
            raise UserError(f"batch must be a positive integer, got {batch!r}")
        if not isinstance(threads, (int, np.integer)) or threads < 1:
            raise UserError(f"threads must be a positive integer, got {threads!r}")
        self.batch = int(batch)
        self.allowed: np.ndarray | None = None  # a lock (see constrain) applied by every step()
        self._runner, self.note = open_runner(self.model, self.batch, device, seed, int(threads))
        self.provider: str = self._runner.provider
        self._default_temperature = np.ones((self.batch, 1), np.float32)
        self.temperature = temperature
        self._clamped = True  # the first step writes the (empty) clamps

    def describe(self) -> str:
        """One line: the model and where it runs, and why not on the GPU if it was wanted."""
        where = f"{self.model.summary()} on {self.provider}, batch {self.batch}"
        return f"{where} ({self.note})" if self.note else where

    @property
    def temperature(self) -> np.ndarray:
        """The default temperature of each stream, [B]."""
        return self._default_temperature[:, 0].copy()

    @temperature.setter
    def temperature(self, value) -> None:
        self._default_temperature[:, 0] = self._temperatures(value)

    def step(self, clamp_mask=None, clamp_value=None, temperature=None) -> np.ndarray:
        """Generate one frame per stream: [B, n_visible] uint8. Units where clamp_mask is
        non-zero are held at clamp_value (0 where it is not given); both are [n_visible]
        (for every stream) or [B, n_visible]. `allowed` adds its clamps to 0."""
        mask, value = constrain(self.allowed, clamp_mask, clamp_value)
        self._write_clamps(mask, value)
        runner = self._runner
        runner.temperature[:] = self._default_temperature if temperature is None else \
            self._temperatures(temperature)[:, None]
        return runner.step().astype(np.uint8)

    def listen(self, frames) -> np.ndarray:
        """Feed frames that were played ([B, n_visible] or [n_visible], 0/1): every unit is
        held, so the state follows them; returns them as the model saw them."""
        return self.step(clamp_mask=np.ones(self.model.n_visible, np.float32), clamp_value=frames)

    def reset(self, rows=None) -> None:
        """Back to the start of a piece (u0, after silence): every stream, or only `rows`
        (an index, a list or a bool mask)."""
        state = self._runner.get_state()
        state[slice(None) if rows is None else rows] = initial_state(self.model, 1)[0]
        self._runner.set_state(state)

    @property
    def state(self) -> np.ndarray:
        """A copy of each stream's state, [B, model.state_size]: the recurrent state u, then
        for a version 2 model the previous frame its sampler starts from; assign it to roll back."""
        return self._runner.get_state().copy()

    @state.setter
    def state(self, value) -> None:
        u = np.asarray(value, dtype=np.float32)
        want = (self.batch, self.model.state_size)
        if u.shape != want:
            raise ValueError(f"state must have shape {want}, got {u.shape}")
        self._runner.set_state(np.ascontiguousarray(u))

    @property
    def noise_state(self) -> dict:
        """The noise generator's state: restore it with `state` to replay a look-ahead exactly."""
        return self._runner.get_noise_state()

    @noise_state.setter
    def noise_state(self, value: dict) -> None:
        self._runner.set_noise_state(value)

    # -- helpers --

    def _temperatures(self, value) -> np.ndarray:
        t = np.broadcast_to(np.asarray(value, dtype=np.float32).reshape(-1), (self.batch,))
        if not np.all(np.isfinite(t) & (t > 0)):
            raise UserError(f"temperature must be a positive number, got {value!r}")
        return t

    def _rows(self, x, what: str) -> np.ndarray:
        a = np.asarray(x)
        if a.shape not in ((self.model.n_visible,), (self.batch, self.model.n_visible)):
            raise ValueError(f"{what} must have shape ({self.model.n_visible},) or "
                             f"({self.batch}, {self.model.n_visible}), got {a.shape}")
        return a

    def _write_clamps(self, mask, value) -> None:
        """Only touch the bound buffers when there is something to write or to clear."""
        runner = self._runner
        if mask is None:
            if value is not None:
                raise ValueError("clamp_value needs a clamp_mask saying which units it holds")
            if self._clamped:
                runner.clamp_mask[:] = 0
                runner.clamp_value[:] = 0
                self._clamped = False
            return
        held = self._rows(mask, "clamp_mask") != 0
        runner.clamp_mask[:] = held
        runner.clamp_value[:] = 0 if value is None else held & (self._rows(value, "clamp_value") != 0)
        self._clamped = True
