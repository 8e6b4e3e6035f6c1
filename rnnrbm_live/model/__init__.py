"""The exported model at run time: its card (card.py), onnxruntime runners (runners.py) and
the stateful step session everything plays through (session.py). No torch."""
