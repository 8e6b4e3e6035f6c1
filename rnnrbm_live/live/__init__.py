"""The live engine: ports, clocks, the input router and sender threads (engine.py, sender.py),
live controls, note messages, and the modes (modes/) that decide what each frame plays."""
