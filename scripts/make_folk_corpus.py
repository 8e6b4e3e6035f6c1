"""A corpus of real MIDI files nobody here wrote, for scale tests of the folder path: the
folk tunes of the ABC collections music21 ships (essenFolksong, ryansMammoth, ...; about
13,000 tunes), each tune converted to its own .mid by abc2midi (Debian/Ubuntu: abcmidi).
music21's own ABC-to-MIDI export would do too, at a few tunes per second.

Run: pip install music21; apt-get install abcmidi; python scripts/make_folk_corpus.py runs/folk
Prints how many tunes and files it wrote."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path


def abc_files() -> list[Path]:
    spec = find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_folk_corpus: music21 is not installed; pip install music21")
    corpus = Path(next(iter(spec.submodule_search_locations))) / "corpus"
    return sorted(corpus.rglob("*.abc"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    args = p.parse_args()
    if shutil.which("abc2midi") is None:
        sys.exit("make_folk_corpus: abc2midi not found; apt-get install abcmidi")
    t0 = time.perf_counter()
    sources = abc_files()
    for source in sources:
        # abc2midi names each tune <stem><X>.mid in the folder it runs in: one folder per book.
        target = args.out / source.parent.name / source.stem
        target.mkdir(parents=True, exist_ok=True)
        # it writes beside its input: a link to the book in the target folder keeps the corpus clean
        link = target / source.name
        link.unlink(missing_ok=True)
        link.symlink_to(source.resolve())
        subprocess.run(["abc2midi", source.name, "-quiet", "-silent"], cwd=target,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        link.unlink()
    n = sum(1 for _ in args.out.rglob("*.mid"))
    print(f"{n} midi files from {len(sources)} abc books in {args.out}/ ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
