"""The on-disk caches of parsed MIDI files.

- One entry per file (`rolls/<key>.npz`): its roll, or why it cannot be used, keyed by a
  hash of the file's bytes and of everything that shapes the roll. Adding a file to a
  folder parses that file alone; an edited file is parsed again.
- One pack per folder split (`packs/<key>.rolls` + `.json`): every roll of the split, one
  after the other, as a flat [frames, 88] uint8 file that is read memory-mapped, so a
  corpus larger than memory can be trained on, and each process of a distributed run only
  reads the pages of the sequences it trains. Its key is a hash of the entries' keys (and
  the files' names), so it is built once and used until a file changes.
Nothing here unpickles: .npz without pickles, raw bytes, JSON."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rnnrbm_live import __version__
from rnnrbm_live.midi import keys, reader

# Bump when the roll stored for a file changes meaning, so stale cache entries are ignored;
# the package version and reader.READER_VERSION also go in the key.
CACHE_FORMAT = 1
PACK_FORMAT = 1


class RollCache:
    """Parsed rolls (or the reason a file was skipped) as .npz files named by a hash of the
    MIDI content and everything that shapes the roll. A cache that cannot be written only
    costs time, so write failures are reported once and otherwise ignored."""

    def __init__(self, root: Path):
        self.folder = root / "rolls"
        self._warned = False

    @staticmethod
    def key(content: bytes, frames_per_beat: int) -> str:
        version = reader.READER_VERSION
        header = f"rnnrbm-live roll {CACHE_FORMAT} {__version__} {version} fpb={frames_per_beat}\n"
        return hashlib.sha256(header.encode("utf-8") + content).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> np.ndarray | str | None:
        try:
            with np.load(self.path(key), allow_pickle=False) as entry:
                if "error" in entry:
                    return str(entry["error"])
                roll = entry["roll"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # missing or damaged: parse the file again
        ok = roll.ndim == 2 and roll.shape[1] == keys.N_KEYS and roll.dtype == np.uint8
        return roll if ok else None

    def put(self, key: str, value: np.ndarray | str) -> None:
        arrays = {"error": np.array(value)} if isinstance(value, str) else {"roll": value}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.path(key)) as file:
                np.savez_compressed(file, **arrays)
        except OSError as error:
            if not self._warned:
                message = f"cannot cache parsed midi in {self.folder} ({error}); going on without"
                print(message, file=sys.stderr)
                self._warned = True


@contextmanager
def atomic_file(path: Path, mode: str = "wb"):
    """A file to write that appears at `path` only whole: written beside it under a
    temporary name, then renamed; a reader running at the same time (another training job,
    another rank) sees no file or a whole one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Packs:
    """A folder split's rolls as one memory-mapped file (see the module's docstring)."""

    def __init__(self, root: Path):
        self.folder = root / "packs"

    @staticmethod
    def key(names: list[str], entry_keys: list[str], extra: str) -> str:
        lines = [f"rnnrbm-live pack {PACK_FORMAT} {extra}"] + [f"{n}\t{k}" for n, k in zip(names, entry_keys)]
        return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()

    def open(self, key: str) -> tuple[list[np.ndarray], list[str]] | None:
        """The rolls (read-only views of the mapped file) and the skip reasons, or None
        when there is no whole pack of that key."""
        try:
            index = json.loads((self.folder / f"{key}.json").read_text())
            offsets, lengths = index["offsets"], index["lengths"]
            frames = int(index["frames"])
            rolls = np.memmap(self.folder / f"{key}.rolls", dtype=np.uint8, mode="r",
                              shape=(frames, keys.N_KEYS)) if frames else np.zeros((0, keys.N_KEYS), np.uint8)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return [rolls[o:o + n] for o, n in zip(offsets, lengths)], list(index["skipped"])

    def write(self, key: str, items: Iterable[tuple[str, np.ndarray | str]]) -> tuple[list[np.ndarray], list[str]]:
        """Stream (name, roll or reason) into a new pack, one roll in memory at a time, and
        open it. The index is written last: a pack without one is not there."""
        self.folder.mkdir(parents=True, exist_ok=True)
        offsets, lengths, skipped, frames = [], [], [], 0
        with atomic_file(self.folder / f"{key}.rolls") as file:
            for name, value in items:
                if isinstance(value, str):
                    skipped.append(f"{name}: {value}")
                    continue
                file.write(np.ascontiguousarray(value, dtype=np.uint8).tobytes())
                offsets.append(frames)
                lengths.append(len(value))
                frames += len(value)
        index = {"format": PACK_FORMAT, "frames": frames, "offsets": offsets, "lengths": lengths, "skipped": skipped}
        with atomic_file(self.folder / f"{key}.json", "w") as file:
            file.write(json.dumps(index))
        return self.open(key)

