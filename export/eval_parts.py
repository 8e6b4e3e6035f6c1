"""The parts of a sharded evaluation: each shard's per-frame results in a safetensors file
with its settings, and the split's results put back together from all of them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from rnnrbm_live.errors import UserError

from .measures import FrameResults

FORMAT = "rnnrbm-eval-part/1"
_TENSORS = ("ll", "logz_se", "acc", "ess", "chain", "played")
# Settings that differ between the parts of one evaluation; everything else must agree.
_PER_PART = ("shard", "first_frame", "end_frame", "seconds")


def part_path(folder: str | os.PathLike, shard: tuple[int, int]) -> Path:
    return Path(folder) / f"part-{shard[0]}-of-{shard[1]}.safetensors"


def save_part(path: Path, results: FrameResults, run: dict) -> None:
    """Write one shard's per-frame results and everything needed to check and combine it."""
    tensors = {name: getattr(results, name).double().cpu().contiguous() for name in _TENSORS
               if getattr(results, name) is not None}
    meta = {"format": FORMAT, **results.meta, **run}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata={"rnnrbm_eval_part": json.dumps(meta)})
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the part ({(e.strerror or 'i/o error').lower()}); "
                        "check the folder is writable") from None


def load_part(path: str | os.PathLike) -> tuple[FrameResults, dict]:
    name = str(path)
    try:
        with safe_open(name, "pt") as f:
            meta = json.loads((f.metadata() or {}).get("rnnrbm_eval_part", "null"))
        tensors = load_file(name)
    except FileNotFoundError:
        raise UserError(f"{name}: no such part file; give the files rnnrbm-eval --shard wrote") from None
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError):
        raise UserError(f"{name}: not a part written by rnnrbm-eval --shard; give the files it wrote") \
            from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "ll" not in tensors:
        raise UserError(f"{name}: not a part written by rnnrbm-eval --shard; give the files it wrote")
    results = FrameResults(**{n: tensors.get(n) for n in _TENSORS}, meta=meta)
    return results, meta


def combine(paths: list[str]) -> tuple[FrameResults, dict]:
    """The whole split's per-frame results from its parts, and the settings they share
    (with the parts' seconds added up); refuses parts of different runs, gaps and overlaps."""
    if not paths:
        raise UserError("--combine: give the part files that rnnrbm-eval --shard wrote")
    parts = sorted((load_part(p) + (str(p),) for p in paths), key=lambda x: x[1]["first_frame"])
    first_meta = parts[0][1]
    shared = {k: v for k, v in first_meta.items() if k not in _PER_PART}
    for _, meta, name in parts[1:]:
        differ = sorted(k for k in set(shared) | set(meta)
                        if k not in _PER_PART and meta.get(k) != shared.get(k))
        if differ:
            raise UserError(f"{name}: a part of another evaluation (it differs in {', '.join(differ)}); "
                            f"combine the parts of one run")
    _check_cover(parts, first_meta["shard"][1], first_meta["total_frames"])
    merged = FrameResults(**{n: None if getattr(parts[0][0], n) is None
                             else torch.cat([getattr(r, n) for r, _, _ in parts]) for n in _TENSORS},
                          meta={**shared, "shard": [1, 1], "first_frame": 0,
                                "end_frame": first_meta["total_frames"]})
    return merged, {**shared, "seconds": sum(m["seconds"] for _, m, _ in parts)}


def _check_cover(parts: list, n: int, total: int) -> None:
    seen = [m["shard"][0] for _, m, _ in parts]
    missing = sorted(set(range(1, n + 1)) - set(seen))
    doubled = sorted({i for i in seen if seen.count(i) > 1})
    if any(m["shard"][1] != n for _, m, _ in parts) or doubled:
        raise UserError(f"--combine: the parts overlap (shard {', '.join(map(str, doubled)) or '?'} given "
                        "twice, or shards of different counts); give each part once")
    if missing:
        raise UserError(f"--combine: shard {', '.join(f'{i}/{n}' for i in missing)} missing; run "
                        "rnnrbm-eval --shard for it, then combine all the parts")
    end = 0
    for _, m, name in parts:
        if m["first_frame"] != end:
            raise UserError(f"{name}: starts at frame {m['first_frame']}, not {end}; the parts do not fit")
        end = m["end_frame"]
    if end != total:
        raise UserError(f"--combine: the parts cover {end} of {total} frames")
