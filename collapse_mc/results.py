"""Results as a table: a results store read into a pandas ``DataFrame`` (or plain dicts), one row per cell or per
(cell, depth).

    import collapse_mc.results
    cells = collapse_mc.results.load("collapse_mc.sqlite")                    # one row per cell
    depths = collapse_mc.results.load("collapse_mc.sqlite", profiles=True)    # one row per (cell, depth)
    rows = collapse_mc.results.load_records("collapse_mc.sqlite")            # the same rows, no pandas needed

Columns, in this order:

* ``cell_hash`` (the cell's id in the store), ``kind`` (``born_dead`` or ``trained``), ``sweep`` (the names of
  the sweeps whose plan holds the cell, joined by ``", "``; None for none);
* every setting of the cell as its own column: ``width``, ``depth`` (hidden layers L_h), ``layers`` (= depth + 1,
  the papers' count), then ``d_in``, ``activation``, ``init``, ..., the training settings of trained cells
  (``target``, ``loss``, ``optimizer``, ``lr``, ...) and ``seed``; a setting a cell does not have is missing;
* the counts and estimates of ``Store.cell_estimates``: ``trials``, ``born_dead``, ``collapsed``, ``diverged``,
  ``dead_after_training``, ``near_flat_at_init``, ``decided`` (missing for born-dead cells), ``p``, ``ci_low``,
  ``ci_high`` (P(collapse) among the ``decided`` trials for a trained cell, P(born dead) for a born-dead cell),
  ``p_born_dead`` with ``born_dead_ci_low``/``born_dead_ci_high``, for trained cells ``p_dead_after_training``,
  ``p_near_flat_at_init``, ``p_diverged`` with their ``_ci_low``/``_ci_high``, ``dead_fraction``, ``blocks``;
* ``confidence``: the level of every interval in the row (Wilson score intervals, ``estimates.wilson``).

With ``profiles=True``, one row per cell with trials and per depth d = 1 .. the cell's depth: P(born dead) at
depth d from the cell's per-trial first dead layers (the same networks cut after d hidden layers; for a trained
cell, its networks at initialization). There ``depth`` = d, ``layers`` = d + 1, ``cell_depth`` = the cell's own
depth, and the results are ``trials``, ``born_dead`` (count at depth d), ``p``, ``ci_low``, ``ci_high``, ``confidence``.

The store is opened read-only: nothing in it is written or migrated (a schema-1 store is read as it is), and no
store is created where there is none. The rows are those of ``collapse_mc.store.load_rows`` (levels ``cells``
and ``depths``) with the id columns added.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .config import ConfigError
from .store import Store
from .store.rows import cell_rows, depth_rows, sweep_cell_hashes

if TYPE_CHECKING:
    import pandas

KINDS = ("born_dead", "trained")
ID_COLUMNS = ("cell_hash", "kind", "sweep")
_LEAD = ("width", "depth", "layers", "cell_depth")
_PANDAS_MISSING = ("collapse_mc.results.load needs pandas: pip install -e '.[results]' (or pip install pandas); "
                   "collapse_mc.results.load_records gives the same rows as dicts")


def load(db, *, profiles: bool = False, kind: str | None = None, sweep: str | None = None,
         confidence: float = 0.95) -> pandas.DataFrame:
    """The results store at ``db`` as a ``pandas.DataFrame``: one row per cell, or per (cell, depth).

    Args:
      db: path of a results store (opened read-only; a missing file or one that is not a store raises
        ``StoreError``, a ``ConfigError``, with a one-line message).
      profiles: False: one row per cell (settings, counts, p with its Wilson interval); True: one row per cell
        and depth d = 1 .. its depth, P(born dead) at depth d (see the module docstring for the columns).
      kind: only cells of this kind, ``born_dead`` or ``trained``.
      sweep: only the cells of the sweep(s) with this name (or whose hash starts with it), in plan order.
      confidence: level of the Wilson intervals (``ci_low``, ``ci_high`` and every ``*_ci_low``/``*_ci_high``).

    Counts are integer columns (pandas ``Int64`` where some rows have none, e.g. ``collapsed`` of born-dead
    cells); a setting or result a row does not have is missing (``<NA>`` / NaN).
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(_PANDAS_MISSING) from None
    records = load_records(db, profiles=profiles, kind=kind, sweep=sweep, confidence=confidence)
    columns = list(records[0]) if records else list(ID_COLUMNS)
    df = pd.DataFrame.from_records(records, columns=columns)
    return df.astype(_nullable_dtypes(records, columns))


def load_records(db, *, profiles: bool = False, kind: str | None = None, sweep: str | None = None,
                 confidence: float = 0.95) -> list[dict]:
    """The rows of ``load`` as plain dicts (no pandas): every dict has the same keys in the same order, None
    where a row has no value (e.g. ``lr`` of a born-dead cell). For ``csv.DictWriter`` or ``json.dump``."""
    if kind not in (None, *KINDS):
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be a number strictly between 0 and 1, got {confidence!r}")
    if sweep is not None and (not isinstance(sweep, str) or not sweep):
        raise ConfigError(f"sweep must be a sweep's name or hash prefix, got {sweep!r}")
    with Store(db, readonly=True) as st:
        cells = {c["cell_hash"]: c for c in st.cells()}
        names: dict[str, list[str]] = {}
        for _, name, h in st.sweep_cells():
            if h is not None and name not in names.setdefault(h, []):
                names[h].append(name)
        hashes = list(cells)
        if sweep is not None:
            hashes = sweep_cell_hashes(st, sweep)
            if hashes is None:
                raise ConfigError(f"no sweep named {sweep!r} in {db}")
        hashes = [h for h in hashes if kind in (None, cells[h]["kind"])]
        rows = depth_rows(st, hashes, confidence) if profiles else cell_rows(st, None, hashes, confidence)
    out = []
    for r in rows:
        c = cells[r["cell_hash"]]
        head = {"cell_hash": c["cell_hash"], "kind": c["kind"], "sweep": ", ".join(names.get(c["cell_hash"], []))
                or None}
        settings = {k: r[k] for k in r if k in c["settings"] or k == "cell_depth"}
        settings.pop("kind", None)
        tail = {k: v for k, v in r.items() if k not in settings and k not in head}
        out.append((head, settings, {**tail, "confidence": confidence}))
    lead = [k for k in _LEAD if any(k in s for _, s, _ in out)]
    columns = list(ID_COLUMNS) + lead + _merged_order([k for k in s if k not in lead] for _, s, _ in out) \
        + _merged_order(t for _, _, t in out)
    return [{k: {**h, **s, **t}.get(k) for k in columns} for h, s, t in out]


def _merged_order(orders) -> list:
    """The union of several key orders, each new key placed right after the key it follows in its own order
    (so the keys only trained cells have land among their neighbours, not at the end)."""
    out: list = []
    for keys in orders:
        pos = -1
        for k in keys:
            if k in out:
                pos = out.index(k)
            else:
                pos += 1
                out.insert(pos, k)
    return out


def _nullable_dtypes(records: list[dict], columns: list) -> dict:
    """pandas dtypes that keep integer and boolean columns with missing values integer (``Int64``) or boolean."""
    out = {}
    for k in columns:
        vals = [r[k] for r in records if r[k] is not None and not (isinstance(r[k], float) and math.isnan(r[k]))]
        if len(vals) == len(records) or not vals:
            continue
        if all(isinstance(v, bool) for v in vals):
            out[k] = "boolean"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            out[k] = "Int64"
    return out


__all__ = ["ID_COLUMNS", "KINDS", "load", "load_records"]
