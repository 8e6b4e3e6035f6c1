"""Datasets: the four bundled benchmarks (sizes checked against data/README.md) and folders
of real MIDI files written with mido, read back through pianoroll.read_midi and the
on-disk cache. No mocks: cache hits are proven by tampering with a cache entry and seeing
the tampered roll come back."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

from rnnrbm_live.midi import datasets, keys
from rnnrbm_live.errors import UserError

# data/README.md: pieces and frames per split.
BUNDLED_SIZES = {
    "jsb_chorales": {"train": (229, 13807), "valid": (76, 4602), "test": (77, 4725)},
    "nottingham": {"train": (694, 176561), "valid": (173, 45513), "test": (170, 44463)},
    "musedata": {"train": (524, 245202), "valid": (135, 82755), "test": (124, 64339)},
    "piano_midi": {"train": (87, 75911), "valid": (12, 8540), "test": (25, 19036)},
}
N_SONGS = 24


# --- helpers ----------------------------------------------------------------------------


def write_song(path: Path, chords: list[list[int]], *, channel: int = 0, tpb: int = 480) -> None:
    """A MIDI file with one chord per beat (MIDI note numbers)."""
    track = mido.MidiTrack()
    for chord in chords:
        for note in chord:
            track.append(mido.Message("note_on", note=note, velocity=80, channel=channel))
        for i, note in enumerate(chord):
            gap = tpb if i == 0 else 0  # all notes of the chord end one beat after it starts
            track.append(mido.Message("note_off", note=note, channel=channel, time=gap))
    midi = mido.MidiFile(ticks_per_beat=tpb)
    midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(path)


def expected_roll(chords: list[list[int]], frames_per_beat: int = 2) -> np.ndarray:
    roll = np.zeros((len(chords) * frames_per_beat, keys.N_KEYS), np.uint8)
    for beat, chord in enumerate(chords):
        for note in chord:
            roll[beat * frames_per_beat : (beat + 1) * frames_per_beat, note - 21] = 1
    return roll


def song_name(i: int) -> str:
    """Spread over three folder depths and three spellings of the suffix."""
    return ("", "a/", "a/b/")[i % 3] + f"song{i:02d}" + (".mid", ".MID", ".midi")[i % 3]


def song_chords(i: int, shift: int = 0) -> list[list[int]]:
    """Song i is told apart by its own pitch and length."""
    return [[30 + i + shift, 60]] + [[30 + i + shift]] * (i % 4)


def name_in(split: str, stem: str) -> str:
    """The first file name stem<k>.mid that the hash puts in `split`."""
    names = (f"{stem}{k}.mid" for k in range(1000))
    return next(name for name in names if datasets.split_of(name) == split)


def cache_entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.npz"))


@pytest.fixture
def song_folder(tmp_path: Path) -> Path:
    """24 good songs at three depths, three bad .mid files in train, and things to ignore."""
    folder = tmp_path / "songs"
    for i in range(N_SONGS):
        write_song(folder / song_name(i), song_chords(i))
    (folder / name_in("train", "not_midi")).write_text("these are lyrics, not midi\n")
    header = (folder / song_name(0)).read_bytes()[:10]  # MThd cut short
    (folder / "a" / "b" / name_in("train", "truncated")).write_bytes(header)
    write_song(folder / name_in("train", "drums"), [[36, 42]] * 4, channel=9)
    (folder / "notes.txt").write_text("not a midi suffix: ignored\n")
    (folder / "folder.mid").mkdir()  # a directory with a midi suffix: ignored
    return folder


def songs_in(split: str) -> list[int]:
    names = {song_name(i): i for i in range(N_SONGS)}
    return [names[name] for name in sorted(names) if datasets.split_of(name) == split]


# --- bundled datasets -------------------------------------------------------------------


@pytest.mark.parametrize("name", datasets.DATASETS)
def test_bundled_split_sizes_match_the_readme(name: str) -> None:
    for split, (n_pieces, n_frames) in BUNDLED_SIZES[name].items():
        rolls = datasets.load_split(name, split)
        assert datasets.describe(rolls)["n_sequences"] == len(rolls) == n_pieces
        assert sum(len(roll) for roll in rolls) == n_frames
        assert all(roll.dtype == np.uint8 and roll.ndim == 2 for roll in rolls)
        assert all(roll.shape[1] == 88 for roll in rolls)
        assert set(np.unique(np.concatenate(rolls))) == {0, 1}


def test_describe() -> None:
    summary = datasets.describe(datasets.load_split("jsb_chorales", "train"))
    assert summary["n_sequences"] == 229 and summary["n_frames"] == 13807
    assert 3.5 < summary["mean_polyphony"] < 4.0  # four voices, some held or silent
    assert datasets.describe([]) == {"n_sequences": 0, "n_frames": 0, "mean_polyphony": 0.0}


def test_bundled_grids() -> None:
    grids = [datasets.dataset_frames_per_beat(name) for name in datasets.DATASETS]
    assert grids == [1, 2, 2, 2]
    native = datasets.load_split("jsb_chorales", "test")
    doubled = datasets.load_split("jsb_chorales", "test", frames_per_beat=2)
    assert all(np.array_equal(np.repeat(a, 2, axis=0), b) for a, b in zip(native, doubled))
    for bad in (1, 3, 0):
        with pytest.raises(UserError, match="frames_per_beat"):
            datasets.load_split("nottingham", "test", frames_per_beat=bad)


def test_bad_split_or_name_lists_the_choices() -> None:
    with pytest.raises(UserError, match="train, valid, test"):
        datasets.load_split("jsb_chorales", "validation")
    with pytest.raises(UserError, match="jsb_chorales, nottingham, musedata, piano_midi"):
        datasets.load_split("jsb_chorale")
    with pytest.raises(UserError, match="jsb_chorales, nottingham, musedata, piano_midi"):
        datasets.dataset_frames_per_beat("bach")


def test_bundled_augment_and_transpose_to_c() -> None:
    rolls = datasets.load_split("jsb_chorales", "test")
    augmented = datasets.load_split("jsb_chorales", "test", augment_all_keys=True)
    assert len(augmented) == 12 * len(rolls)
    for i in (0, len(rolls) - 1):
        for j, shift in enumerate(range(-6, 6)):
            assert np.array_equal(augmented[12 * i + j], keys.transpose(rolls[i], shift))
    # Already in C: estimating again could only move the pieces it gets wrong.
    in_c = datasets.load_split("jsb_chorales", "test", transpose_to_c=True)
    assert all(np.array_equal(a, b) for a, b in zip(rolls, in_c))


# --- folders of MIDI files --------------------------------------------------------------


def test_split_of_is_stable_and_80_10_10() -> None:
    # Pinned: changing the hash would silently reshuffle every user's splits.
    pinned = {
        "bad.mid": "train",
        "a_minor.mid": "test",
        "a/not_midi.mid": "valid",
        "a/b/song05.midi": "valid",
        "a/b/song11.midi": "test",
    }
    assert {name: datasets.split_of(name) for name in pinned} == pinned
    counts = collections.Counter(datasets.split_of(f"d{i}/s{i}.mid") for i in range(10000))
    assert abs(counts["train"] - 8000) < 150 and abs(counts["valid"] - 1000) < 100
    assert datasets.split_of(Path("a") / "b.mid") == datasets.split_of("a/b.mid")


def test_folder_splits_hold_every_good_file_once(song_folder: Path, tmp_path: Path) -> None:
    seen = []
    for split in datasets.SPLITS:
        rolls = datasets.load_split(song_folder, split, cache_dir=tmp_path / "cache")
        wanted = songs_in(split)
        assert wanted, f"the fixture should put a song in {split}"
        assert len(rolls) == len(wanted)
        for roll, i in zip(rolls, wanted):
            assert roll.dtype == np.uint8 and np.array_equal(roll, expected_roll(song_chords(i)))
        seen += wanted
    assert sorted(seen) == list(range(N_SONGS))
    assert len(songs_in("train")) > len(songs_in("valid"))


def test_bad_files_are_skipped_and_reported_on_one_line(song_folder, tmp_path, capsys) -> None:
    rolls = datasets.load_split(str(song_folder), "train", cache_dir=tmp_path / "cache")
    err = capsys.readouterr().err
    print(err)
    assert len(rolls) == len(songs_in("train"))
    lines = err.strip().splitlines()
    assert len(lines) == 1
    head = f"read {len(rolls)} train files from {song_folder.as_posix()}/ (3 skipped: "
    assert lines[0].startswith(head)
    assert f"{name_in('train', 'not_midi')}: not a midi file" in lines[0]
    assert f"a/b/{name_in('train', 'truncated')}: truncated midi file" in lines[0]
    assert f"{name_in('train', 'drums')}: no notes" in lines[0]


def test_second_load_comes_from_the_cache(song_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = datasets.load_split(song_folder, "train", cache_dir=cache)
    entries = cache_entries(cache)
    assert len(entries) == len(songs_in("train")) + 3  # the bad files' reasons are kept too
    leftovers = [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".npz"]
    assert not leftovers  # the temporary files were all renamed into place
    # Overwrite the entry of the first song: if the reader ran again, we would not see this.
    marker = np.ones((3, 88), np.uint8)
    entry = next(p for p in entries if np.array_equal(_entry_roll(p), first[0]))
    np.savez_compressed(entry, roll=marker)
    second = datasets.load_split(song_folder, "train", cache_dir=cache)
    assert np.array_equal(second[0], marker)
    assert all(np.array_equal(a, b) for a, b in zip(first[1:], second[1:]))
    assert cache_entries(cache) == entries


def test_editing_a_file_invalidates_its_entry(song_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    i = songs_in("train")[0]
    datasets.load_split(song_folder, "train", cache_dir=cache)
    n_entries = len(cache_entries(cache))
    write_song(song_folder / song_name(i), song_chords(i, shift=1))
    rolls = datasets.load_split(song_folder, "train", cache_dir=cache)
    assert np.array_equal(rolls[0], expected_roll(song_chords(i, shift=1)))
    assert len(cache_entries(cache)) == n_entries + 1


def test_cache_is_keyed_by_content_and_grid_not_path(song_folder, tmp_path) -> None:
    cache = tmp_path / "cache"
    first = datasets.load_split(song_folder, "train", cache_dir=cache)
    n_entries = len(cache_entries(cache))
    moved = shutil.copytree(song_folder, tmp_path / "elsewhere" / "songs")
    again = datasets.load_split(moved, "train", cache_dir=cache)
    assert len(cache_entries(cache)) == n_entries  # same bytes, same entries
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    finer = datasets.load_split(song_folder, "train", frames_per_beat=4, cache_dir=cache)
    assert len(cache_entries(cache)) == 2 * n_entries
    assert np.array_equal(finer[0], expected_roll(song_chords(songs_in("train")[0]), 4))


def test_damaged_cache_entries_are_parsed_again(song_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = datasets.load_split(song_folder, "train", cache_dir=cache)
    for entry in cache_entries(cache):
        entry.write_bytes(b"PK\x03\x04 half a zip")
    again = datasets.load_split(song_folder, "train", cache_dir=cache)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_default_cache_dir_follows_xdg(song_folder, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.default_cache_dir() == tmp_path / "xdg" / "rnnrbm-live"
    datasets.load_split(song_folder, "valid")
    assert len(cache_entries(tmp_path / "xdg" / "rnnrbm-live")) == len(songs_in("valid"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert datasets.default_cache_dir() == Path.home() / ".cache" / "rnnrbm-live"


def test_transpose_to_c_and_augment(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    e_major = [[64 + step] for step in (0, 2, 4, 5, 7, 9, 11, 12)]
    e_major += [[64, 68, 71], [69, 73, 76], [71, 75, 78], [64, 68, 71]]  # I IV V I
    a_minor = [[57 + step] for step in (0, 2, 3, 5, 7, 8, 11, 12)]
    a_minor += [[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]]  # i iv V i
    write_song(folder / name_in("train", "e_major"), e_major)
    write_song(folder / name_in("train", "a_minor"), a_minor)
    cache = tmp_path / "cache"

    plain = datasets.load_split(folder, "train", cache_dir=cache)
    names = sorted([name_in("train", "e_major"), name_in("train", "a_minor")])
    assert [keys.estimate_key(roll)[:2] for roll in plain] == [
        (4, "major") if name.startswith("e_") else (9, "minor") for name in names
    ]
    in_c = datasets.load_split(folder, "train", transpose_to_c=True, cache_dir=cache)
    for name, original, moved in zip(names, plain, in_c):
        shift, mode = (-4, "major") if name.startswith("e_") else (3, "minor")
        assert keys.estimate_key(moved)[:2] == (0, mode)
        assert np.array_equal(moved, keys.transpose(original, shift))

    augmented = datasets.load_split(folder, "train", augment_all_keys=True, cache_dir=cache)
    assert len(augmented) == 12 * len(plain)
    assert sorted(keys.estimate_key(roll)[0] for roll in augmented[:12]) == list(range(12))


def test_folder_errors(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="no such dataset or folder"):
        datasets.load_split(tmp_path / "missing", cache_dir=cache)
    write_song(tmp_path / "one.mid", [[60]])
    with pytest.raises(UserError, match="is a file, not a folder"):
        datasets.load_split(tmp_path / "one.mid", cache_dir=cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .mid or .midi file"):
        datasets.load_split(tmp_path / "empty", cache_dir=cache)
    with pytest.raises(UserError, match="frames_per_beat"):
        datasets.load_split(tmp_path, frames_per_beat=0, cache_dir=cache)

    lonely = tmp_path / "lonely"
    write_song(lonely / name_in("train", "only"), [[60]])
    with pytest.raises(UserError, match="none of its 1 midi files falls in the test split"):
        datasets.load_split(lonely, "test", cache_dir=cache)

    broken = tmp_path / "broken"
    (broken / "deep").mkdir(parents=True)
    (broken / "deep" / name_in("train", "bad")).write_bytes(b"RIFF....WAVE")
    with pytest.raises(UserError, match="no usable midi file in the train split"):
        datasets.load_split(broken, cache_dir=cache)
    assert "(1 skipped: deep/" in capsys.readouterr().err


def test_progress_bar(song_folder: Path, tmp_path: Path, capsys) -> None:
    datasets.load_split(song_folder, "valid", cache_dir=tmp_path / "cache", progress=True)
    assert "reading songs" in capsys.readouterr().err


def _entry_roll(entry: Path) -> np.ndarray | None:
    with np.load(entry) as data:
        return data["roll"] if "roll" in data else None


# --- at scale: a pool of parsers, the memory-mapped pack --------------------------------


def test_a_pool_of_parsers_reads_what_one_process_reads(song_folder, tmp_path, capsys) -> None:
    here = datasets.load_split(song_folder, "train", cache_dir=tmp_path / "here", workers=0)
    line_here = capsys.readouterr().err
    pooled = datasets.load_split(song_folder, "train", cache_dir=tmp_path / "pool", workers=2)
    assert capsys.readouterr().err == line_here  # the same 3 skipped, named
    assert len(pooled) == len(here) and all(np.array_equal(a, b) for a, b in zip(here, pooled))
    assert len(cache_entries(tmp_path / "pool")) == len(cache_entries(tmp_path / "here"))


def test_mapped_split_is_one_file_built_once(song_folder, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    plain = datasets.load_split(song_folder, "train", cache_dir=cache)
    line = capsys.readouterr().err
    mapped = datasets.load_split(song_folder, "train", cache_dir=cache, mapped=True)
    assert capsys.readouterr().err == line
    assert all(isinstance(roll, np.memmap) and not roll.flags.writeable for roll in mapped)
    assert len(mapped) == len(plain) and all(np.array_equal(a, b) for a, b in zip(plain, mapped))
    packs = sorted((cache / "packs").iterdir())
    assert [p.suffix for p in packs] == [".json", ".rolls"]
    assert packs[1].stat().st_size == 88 * sum(len(roll) for roll in plain)
    # The pack alone answers the next load: without the per-file entries nothing is parsed again.
    for entry in cache_entries(cache):
        entry.unlink()
    again = datasets.load_split(song_folder, "train", cache_dir=cache, mapped=True)
    assert capsys.readouterr().err == line  # the skipped files are still counted and named
    assert all(np.array_equal(a, b) for a, b in zip(plain, again)) and not cache_entries(cache)


def test_a_changed_file_makes_a_new_pack(song_folder, tmp_path) -> None:
    cache = tmp_path / "cache"
    datasets.load_split(song_folder, "train", cache_dir=cache, mapped=True)
    i = songs_in("train")[0]
    write_song(song_folder / song_name(i), song_chords(i, shift=1))
    rolls = datasets.load_split(song_folder, "train", cache_dir=cache, mapped=True)
    assert np.array_equal(rolls[0], expected_roll(song_chords(i, shift=1)))
    assert len(list((cache / "packs").glob("*.rolls"))) == 2


def test_mapped_transpose_to_c_matches_in_memory(tmp_path) -> None:
    folder = tmp_path / "keys"
    write_song(folder / name_in("train", "e_major"), [[64, 68, 71], [69, 73, 76], [71, 75, 78], [64, 68, 71]])
    cache = tmp_path / "cache"
    plain = datasets.load_split(folder, "train", transpose_to_c=True, cache_dir=cache)
    mapped = datasets.load_split(folder, "train", transpose_to_c=True, cache_dir=cache, mapped=True)
    untransposed = datasets.load_split(folder, "train", cache_dir=cache, mapped=True)
    assert np.array_equal(plain[0], mapped[0]) and not np.array_equal(mapped[0], untransposed[0])
