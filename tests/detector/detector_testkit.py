"""Constants shared by the detector tests (a module of its own: ``from conftest import`` clashes with the
other test folders' conftest.py when several folders run together)."""

#: Options that make a detector fit in well under a second on the tiny test data.
FAST = {"epochs": 2, "batches_per_epoch": 3, "n_pseudo": 16, "use_cache": False}
