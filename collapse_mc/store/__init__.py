"""The results store: one SQLite file of durable per-block records (see ``schema`` for the documented schema).

``Store(path)`` opens a store (``create=True`` to make one, ``readonly=True`` to only read);
``Store.cell_estimates()`` gives one dict per cell (settings by name + counts + Wilson intervals) and
``Store.outcomes(cell_hash)`` the per-trial outcomes. ``check_store_path`` validates a path without writing.
``load_rows(db, level)`` gives self-describing rows (per cell, per depth, per block, per trial) for
``pandas.DataFrame(rows)``.
"""
from .schema import APPLICATION_ID, SCHEMA_VERSION
from .store import RESULT_KEYS, Store, StoreError, check_store_path, covered_count, subtract_ranges
from .rows import load_rows

__all__ = ["APPLICATION_ID", "RESULT_KEYS", "SCHEMA_VERSION", "Store", "StoreError", "check_store_path",
           "covered_count", "load_rows", "subtract_ranges"]
