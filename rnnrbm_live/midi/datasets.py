"""Training data as lists of [T, 88] uint8 piano rolls: one of the four bundled benchmark
datasets, or any folder of MIDI files.

Bundled datasets ship inside the package (rnnrbm_live/bundled/data/*.json.gz, see its README) with
the paper's own train/valid/test splits, already transposed to C major / C minor.

A folder is a dataset too: every *.mid / *.midi below it (any depth, any case) is one
sequence. Each file goes to train, valid or test (80/10/10) by a hash of its path relative
to the folder, so the split is the same on every machine and adding a file never moves
the others. New files are parsed in a pool of processes; parsed rolls are cached on disk,
keyed by the file's content, so a second load reads no MIDI at all and an edited file is
parsed again. With mapped=True a split's rolls come from one memory-mapped file built once
from that cache (roll_cache.py), so a corpus need not fit in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path, PurePath
from typing import Sequence

import numpy as np
from tqdm import tqdm

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi import keys, reader
from rnnrbm_live.midi.roll_cache import Packs, RollCache

DATASETS = ("jsb_chorales", "nottingham", "musedata", "piano_midi")
SPLITS = ("train", "valid", "test")
MIDI_SUFFIXES = (".mid", ".midi")

_NATIVE_FRAMES_PER_BEAT = {"jsb_chorales": 1, "nottingham": 2, "musedata": 2, "piano_midi": 2}
_FOLDER_FRAMES_PER_BEAT = 2  # eighth notes, the grid of three of the four benchmarks
_SPLIT_BUCKETS = {"train": range(0, 80), "valid": range(80, 90), "test": range(90, 100)}

_FILES_FOR_A_POOL = 64  # fewer new files parse faster here than processes start
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
    workers: int | None = None,
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
    workers: processes that parse a folder's new files; 0 parses in this process; None:
      every core, when there are enough new files to be worth it.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if isinstance(source, str) and source in DATASETS:
        sequences = _load_bundled(source, split, frames_per_beat)
    else:
        grid = _FOLDER_FRAMES_PER_BEAT if frames_per_beat is None else frames_per_beat
        grid = _check_frames_per_beat(grid)
        sequences = _load_folder(_as_folder(source), split, grid, transpose_to_c, cache_dir, progress, report,
                                 mapped, workers)
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


def _load_folder(folder: Path, split: str, frames_per_beat: int, transpose_to_c: bool, cache_dir: Path | None,
                 progress: bool, report: bool, mapped: bool, workers: int | None) -> list[np.ndarray]:
    chosen = _split_files(folder, split)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    names = [path.relative_to(folder).as_posix() for path in chosen]
    label = folder.name or str(folder)
    entry_keys = [_entry_key(path, frames_per_beat)
                  for path in tqdm(chosen, desc=f"checking {label}", unit="file", leave=False, disable=not progress)]
    packs = Packs(root)
    pack_key = Packs.key(names, entry_keys, f"fpb={frames_per_beat} to_c={transpose_to_c}")
    found = packs.open(pack_key) if mapped else None

    def read():  # (name, roll or reason) for every file, one at a time
        values = _rolls(chosen, entry_keys, frames_per_beat, RollCache(root), workers)
        if transpose_to_c:
            values = (v if isinstance(v, str) else keys.transpose(v, keys.shift_to_c(v)) for v in values)
        return zip(names, tqdm(values, total=len(chosen), desc=f"reading {label}", unit="file", disable=not progress))

    if mapped and found is None:
        found = _packed(packs, pack_key, read())
    if found is None:  # not mapped, or the pack could not be written
        found = _in_memory(read())
    rolls, skipped = found
    if report:
        print(_summary(folder, split, len(rolls), skipped), file=sys.stderr)
    if not rolls:
        raise UserError(
            f"{folder}: no usable midi file in the {split} split; fix or replace the files above"
        )
    return rolls


def _split_files(folder: Path, split: str) -> list[Path]:
    files = midi_files(folder)
    if not files:
        raise UserError(f"{folder}: no .mid or .midi file in this folder; add some or pick another")
    chosen = [path for path in files if split_of(path.relative_to(folder)) == split]
    if not chosen:
        raise UserError(
            f"{folder}: none of its {len(files)} midi files falls in the {split} split "
            f"(files go 80/10/10 to train/valid/test by a hash of their path); add more files"
        )
    return chosen


def _in_memory(items) -> tuple[list[np.ndarray], list[str]]:
    rolls, skipped = [], []
    for name, value in items:
        if isinstance(value, str):
            skipped.append(f"{name}: {value}")
        else:
            rolls.append(value)
    return rolls, skipped


def _packed(packs: Packs, key: str, items) -> tuple[list[np.ndarray], list[str]] | None:
    try:
        return packs.write(key, items)
    except OSError as error:
        print(f"cannot write the memory-mapped pack in {packs.folder} ({error}); reading into memory",
              file=sys.stderr)
        return None


# An entry key that starts with this is the reason the file could not even be read.
_UNREADABLE = "!"


def _entry_key(path: Path, frames_per_beat: int) -> str:
    try:
        content = path.read_bytes()
    except OSError as error:
        return f"{_UNREADABLE}cannot read it ({error.strerror or error})"
    return RollCache.key(content, frames_per_beat)


def _rolls(paths: list[Path], entry_keys: list[str], frames_per_beat: int, cache: RollCache,
           workers: int | None) -> Iterator[np.ndarray | str]:
    """Each file's roll or the reason it cannot be used, in order: from the cache when the
    content is known, else parsed (in a pool of processes when there are many) and cached."""
    todo = [i for i, key in enumerate(entry_keys) if not key.startswith(_UNREADABLE) and not cache.has(key)]
    n_workers = _pool_size(workers, len(todo))
    pool = ProcessPoolExecutor(n_workers, mp_context=_process_context()) if n_workers else None
    parsed = iter(())
    if pool is not None:
        chunk = max(1, min(64, len(todo) // (8 * n_workers)))
        parsed = pool.map(_parse, [paths[i] for i in todo], itertools.repeat(frames_per_beat), chunksize=chunk)
    in_pool = set(todo) if pool is not None else set()
    try:
        for i, (path, key) in enumerate(zip(paths, entry_keys)):
            if key.startswith(_UNREADABLE):
                yield key[len(_UNREADABLE):]
                continue
            value = next(parsed) if i in in_pool else cache.get(key)
            if value is None or i in in_pool:
                value = _parse(path, frames_per_beat) if value is None else value
                cache.put(key, value)  # failures too, so a bad file is not parsed again on every run
            yield value
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _pool_size(workers: int | None, n_files: int) -> int:
    """Processes to parse with: 0 parses here. By default every core this process may
    use, when there are enough files to pay for starting them."""
    if workers is not None:
        return max(0, min(workers, n_files))
    if n_files < _FILES_FOR_A_POOL:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores if cores > 1 else 0


def _process_context():
    # forkserver: a process that already runs threads (torch, a process group) must not fork
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


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


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/rnnrbm-live, or ~/.cache/rnnrbm-live."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnrbm-live"
