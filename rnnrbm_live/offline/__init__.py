"""Offline work on files: continue a MIDI clip or generate from scratch (continuation.py),
and write the results (output.py) with a piano-roll picture (plot.py) and audio (render.py)."""
