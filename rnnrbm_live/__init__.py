"""rnnrbm-live: an RNN-RBM that plays polyphonic music into a DAW, live or offline."""

__version__ = "0.1.0"
