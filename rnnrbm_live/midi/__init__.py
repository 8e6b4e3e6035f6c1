"""MIDI files and piano rolls: reading (scanner.py, reader.py), writing (writer.py), keys, and
the training datasets as rolls (datasets.py). Imports nothing else of rnnrbm_live but errors and bundled."""
