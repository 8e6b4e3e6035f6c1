"""A corpus of real MIDI files nobody here wrote, for scale tests of the folder path:
the folk tunes of music21's bundled ABC collections (essenFolksong, ryansMammoth, ...),
each tune exported to its own .mid by music21.

Run: pip install music21; python scripts/make_folk_corpus.py runs/folk [--limit 6000]
Tunes music21 cannot parse are skipped and counted."""

from __future__ import annotations

import argparse
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def tunes(abc_file: Path) -> list[tuple[str, str]]:
    """(X number, text) for every tune of an ABC file; the file's header goes with each."""
    text = abc_file.read_text(encoding="latin-1")
    parts = re.split(r"(?m)^(?=X:)", text)
    header, bodies = (parts[0], parts[1:]) if not parts[0].startswith("X:") else ("", parts)
    out = []
    for body in bodies:
        number = re.match(r"X:\s*(\S*)", body).group(1) or str(len(out))
        out.append((re.sub(r"\W", "_", number), header + body))
    return out


def export(job: tuple[str, str, str]) -> bool:
    from music21 import converter

    text, target, _ = job
    try:
        score = converter.parse(text, format="abc")
        score.write("midi", fp=target)
        return True
    except Exception:  # music21 raises many kinds on odd ABC; a skipped tune is counted
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--limit", type=int, default=6000, help="stop after this many tunes")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    from music21 import corpus
    from tqdm import tqdm

    jobs = []
    for path in sorted(map(Path, corpus.getCorePaths())):
        if path.suffix == ".abc":
            for number, text in tunes(path):
                target = args.out / path.parent.name / f"{path.stem}_{number}.mid"
                jobs.append((text, str(target), ""))
    jobs = [j for j in jobs if not Path(j[1]).exists()][: args.limit]
    for _, target, _ in jobs:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        done = list(tqdm(pool.map(export, jobs, chunksize=16), total=len(jobs), unit="tune"))
    print(f"exported {sum(done)} of {len(jobs)} tunes to {args.out}/ in {time.perf_counter() - t0:.0f} s "
          f"({len(done) - sum(done)} music21 could not parse)")


if __name__ == "__main__":
    main()
