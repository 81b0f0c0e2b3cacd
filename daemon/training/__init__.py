"""Dataset building and model training: replays recordings through the feed parser and the book,
runs the simulator, fits models. Offline only; the live path never imports this package (the
models it fits live in :mod:`daemon.models`, which imports nothing from here)."""
