"""Training data as lists of [T, 88] uint8 piano rolls: one of the four bundled benchmark
datasets, or any folder of MIDI files.

Bundled datasets ship inside the package (rnnrbm_live/bundled/data/*.json.gz, see its README) with
the paper's own train/valid/test splits, already transposed to C major / C minor.

A folder is a dataset too: every *.mid / *.midi below it (any depth, any case) is one
sequence. Each file goes to train, valid or test (80/10/10) by a hash of its path relative
to the folder, so the split is the same on every machine and adding a file never moves
the others. Parsed rolls are cached on disk, keyed by the file's content, so a second load
reads no MIDI at all and an edited file is parsed again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path, PurePath
from typing import Sequence

import numpy as np
from tqdm import tqdm

from rnnrbm_live import __version__
from rnnrbm_live.errors import UserError
from rnnrbm_live.midi import keys, reader

DATASETS = ("jsb_chorales", "nottingham", "musedata", "piano_midi")
SPLITS = ("train", "valid", "test")
MIDI_SUFFIXES = (".mid", ".midi")

_NATIVE_FRAMES_PER_BEAT = {"jsb_chorales": 1, "nottingham": 2, "musedata": 2, "piano_midi": 2}
_FOLDER_FRAMES_PER_BEAT = 2  # eighth notes, the grid of three of the four benchmarks
_SPLIT_BUCKETS = {"train": range(0, 80), "valid": range(80, 90), "test": range(90, 100)}

# Bump when the roll stored for a file changes meaning, so stale cache entries are ignored;
# the package version and reader.READER_VERSION also go in the key.
CACHE_FORMAT = 1
_SKIP_REASONS_SHOWN = 3  # the summary stays one readable line on big, messy folders
_ALL_KEYS = range(-6, 6)


def dataset_frames_per_beat(name: str) -> int:
    """Frames per beat of a bundled dataset: 1 for jsb_chorales (quarter notes), else 2."""
    if name not in _NATIVE_FRAMES_PER_BEAT:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return _NATIVE_FRAMES_PER_BEAT[name]


def load_split(
    source: str | Path,
    split: str = "train",
    *,
    frames_per_beat: int | None = None,
    transpose_to_c: bool = False,
    augment_all_keys: bool = False,
    cache_dir: Path | None = None,
    progress: bool = False,
    report: bool = True,
    mapped: bool = False,
) -> list[np.ndarray]:
    """The sequences of one split, each a [T, 88] uint8 array of 0/1.

    source: a bundled name (exactly one of DATASETS) or a folder of MIDI files; to load a
      folder that happens to be called like a bundled dataset, write "./jsb_chorales".
    frames_per_beat: a folder's grid (default 2). A bundled dataset keeps its own grid
      (None) or is stretched to a multiple of it by repeating frames.
    transpose_to_c: move each sequence's estimated key to C major / C minor, as the
      bundled data already is (so it changes nothing for a bundled name).
    augment_all_keys: return every sequence 12 times, shifted by -6..+5 semitones, notes
      pushed off the keyboard dropped; meant for the train split only, to teach the model
      every key. Applied after transpose_to_c, sequence by sequence.
    cache_dir: where parsed MIDI files are kept (default $XDG_CACHE_HOME/rnnrbm-live).
    progress: draw a progress bar over a folder's files.
    report: print the one-line summary of a folder's files (read, skipped and why).
    mapped: return a folder's rolls as read-only views of one memory-mapped file per
      split (built once from the cache), so a corpus larger than memory can be used.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if isinstance(source, str) and source in DATASETS:
        sequences = _load_bundled(source, split, frames_per_beat)
    else:
        grid = _FOLDER_FRAMES_PER_BEAT if frames_per_beat is None else frames_per_beat
        grid = _check_frames_per_beat(grid)
        sequences = _load_folder(_as_folder(source), split, grid, cache_dir, progress, report)
        if transpose_to_c:
            sequences = [keys.transpose(roll, keys.shift_to_c(roll)) for roll in sequences]
    if augment_all_keys:
        sequences = [keys.transpose(roll, k) for roll in sequences for k in _ALL_KEYS]
    return sequences


def describe(sequences: Sequence[np.ndarray]) -> dict:
    """Summary numbers for a list of rolls: n_sequences, n_frames, and mean_polyphony
    (sounding notes per frame, silent frames included)."""
    n_frames = sum(len(roll) for roll in sequences)
    n_notes = sum(int(np.count_nonzero(roll)) for roll in sequences)
    return {
        "n_sequences": len(sequences),
        "n_frames": n_frames,
        "mean_polyphony": n_notes / n_frames if n_frames else 0.0,
    }


# --- bundled datasets -------------------------------------------------------------------


def _load_bundled(name: str, split: str, frames_per_beat: int | None) -> list[np.ndarray]:
    native = dataset_frames_per_beat(name)
    wanted = native if frames_per_beat is None else _check_frames_per_beat(frames_per_beat)
    if wanted % native:
        raise UserError(
            f"{name} has {native} frames per beat: ask for frames_per_beat {native} "
            f"or a multiple of it, not {wanted}"
        )
    # importlib.resources rather than __file__, so this also works from a zipped install.
    resource = resources.files("rnnrbm_live.bundled").joinpath("data", f"{name}.json.gz")
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        frames_lists = json.load(text)[split]
    stretch = wanted // native
    return [np.repeat(_frames_to_roll(frames), stretch, axis=0) for frames in frames_lists]


def _frames_to_roll(frames: list[list[int]]) -> np.ndarray:
    """[[60, 64, 67], [], ...] (MIDI note numbers per frame) -> [T, 88] uint8."""
    roll = np.zeros((len(frames), keys.N_KEYS), dtype=np.uint8)
    rows = np.repeat(np.arange(len(frames)), [len(frame) for frame in frames])
    notes = np.fromiter((note for frame in frames for note in frame), np.int64, len(rows))
    roll[rows, notes - keys.LOWEST_PITCH] = 1
    return roll


def _check_frames_per_beat(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"frames_per_beat must be a whole number of at least 1, not {value!r}")
    return int(value)


# --- folders of MIDI files --------------------------------------------------------------


def midi_files(folder: Path) -> list[Path]:
    """Every *.mid / *.midi file below `folder`, sorted, so sequence order is stable."""
    candidates = Path(folder).rglob("*")
    return sorted(p for p in candidates if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def split_of(relative_path: str | PurePath) -> str:
    """The split ("train", "valid" or "test") a file goes to, from its path relative to the
    dataset folder alone, so it never depends on which other files are there."""
    key = PurePath(relative_path).as_posix().encode("utf-8")
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100
    return next(name for name, buckets in _SPLIT_BUCKETS.items() if bucket in buckets)


def _as_folder(source: str | Path) -> Path:
    folder = Path(source).expanduser()
    if folder.is_dir():
        return folder
    choices = f"give a folder of midi files or one of {', '.join(DATASETS)}"
    if folder.exists():
        raise UserError(f"{source} is a file, not a folder: {choices}")
    raise UserError(f"{source}: no such dataset or folder; {choices}")


def _load_folder(
    folder: Path, split: str, frames_per_beat: int, cache_dir: Path | None, progress: bool, report: bool
) -> list[np.ndarray]:
    files = midi_files(folder)
    if not files:
        raise UserError(f"{folder}: no .mid or .midi file in this folder; add some or pick another")
    chosen = [path for path in files if split_of(path.relative_to(folder)) == split]
    if not chosen:
        raise UserError(
            f"{folder}: none of its {len(files)} midi files falls in the {split} split "
            f"(files go 80/10/10 to train/valid/test by a hash of their path); add more files"
        )
    cache = _RollCache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    rolls, skipped = [], []
    bar = tqdm(chosen, desc=f"reading {folder.name or folder}", unit="file", disable=not progress)
    for path in bar:
        result = _read_roll(path, frames_per_beat, cache)
        if isinstance(result, str):
            skipped.append(f"{path.relative_to(folder).as_posix()}: {result}")
        else:
            rolls.append(result)
    if report:
        print(_summary(folder, split, len(rolls), skipped), file=sys.stderr)
    if not rolls:
        raise UserError(
            f"{folder}: no usable midi file in the {split} split; fix or replace the files above"
        )
    return rolls


def _read_roll(path: Path, frames_per_beat: int, cache: _RollCache) -> np.ndarray | str:
    """The file's roll, or why it cannot be used; from the cache when the content is known."""
    try:
        content = path.read_bytes()
    except OSError as error:
        return f"cannot read it ({error.strerror or error})"
    key = cache.key(content, frames_per_beat)
    cached = cache.get(key)
    if cached is not None:
        return cached
    result = _parse(path, frames_per_beat)
    cache.put(key, result)  # failures too, so a bad file is not parsed again on every run
    return result


def _parse(path: Path, frames_per_beat: int) -> np.ndarray | str:
    try:
        roll = reader.read_midi(path, frames_per_beat=frames_per_beat).roll
    except UserError as error:
        return _reason(str(error), path)
    if not np.any(roll):
        return "no notes"
    return (np.asarray(roll) != 0).astype(np.uint8)


def _reason(message: str, path: Path) -> str:
    """The reader's message cut to what went wrong: the summary names the file itself, and
    the advice after ';' would make the one-line summary unreadable."""
    if message.startswith(str(path)):
        message = message[len(str(path)) :].lstrip(" :")
    return message.split("; ")[0].strip() or "unreadable"


def _summary(folder: Path, split: str, n_read: int, skipped: list[str]) -> str:
    line = f"read {n_read} {split} files from {folder.as_posix().rstrip('/')}/"
    if not skipped:
        return line
    shown = [" ".join(reason.split()) for reason in skipped[:_SKIP_REASONS_SHOWN]]
    if len(skipped) > len(shown):
        shown.append(f"and {len(skipped) - len(shown)} more")
    return f"{line} ({len(skipped)} skipped: {'; '.join(shown)})"


# --- on-disk cache of parsed rolls ------------------------------------------------------


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/rnnrbm-live, or ~/.cache/rnnrbm-live."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnrbm-live"


class _RollCache:
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
            _write_atomically(self.path(key), arrays)
        except OSError as error:
            if not self._warned:
                message = f"cannot cache parsed midi in {self.folder} ({error}); going on without"
                print(message, file=sys.stderr)
                self._warned = True


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file beside `path`, then rename: a reader running at the same
    time (another training job) sees either no entry or a whole one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez_compressed(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

