"""The results store's SQLite schema (version 2; ``store.migrate`` upgrades version 1 in place).

A store is one SQLite file (WAL journal, ``synchronous=FULL``) identified by ``PRAGMA application_id =
0x434D4353`` ('CMCS'), ``PRAGMA user_version = SCHEMA_VERSION`` and the ``meta`` row ``application =
collapse_mc``. A file failing these checks is refused; a newer ``user_version`` is refused (upgrade
collapse_mc), never rewritten.

Tables
------
``meta(key, value)``
    ``application``, ``schema_version``, ``created_at`` (unix seconds), ``created_by`` (package version).
``cells(cell_hash PK, kind, seed, config, settings, grp, created_at)``
    One row per cell. ``cell_hash`` = SHA-256 of ``{"kind", "identity", "seed"}`` where ``identity`` is the
    estimator's ``cell.identity()`` (every setting that determines outcomes). ``config`` is that JSON;
    ``settings`` the flat, named settings shown by ``results`` (``width``, ``depth`` = hidden layers,
    ``layers`` = depth + 1, ``init``, ..., ``seed``). ``grp``: the compiled-shape group.
``sweeps(sweep_hash PK, name, kind, spec, source, created_at, updated_at)``
    One row per sweep (its set of cells: the spec without ``trials``, ``block_size`` and ``chunk_size``).
    ``spec`` is the latest normalized spec (JSON), ``source`` its TOML text.
``plan(sweep_hash, cell_hash, position, trials, block_size)`` PK (sweep_hash, cell_hash)
    What the latest run of each sweep asked for: trials ``[0, trials)`` of each cell, in blocks.
``blocks(id PK, cell_hash, trial_start, trial_stop, trials, born_dead, collapsed, diverged,
         dead_fraction_sum, dead_after_training, near_flat_at_init, decided, package_version, jax_version, jaxlib_version, backend, device_kind,
         device_count, host, pid, started_at, finished_at, seconds)``
    One row per finished block: the global trial indices ``[trial_start, trial_stop)`` of one cell, the
    counts over those trials (``collapsed``, ``diverged``, ``dead_after_training``, ``near_flat_at_init``,
    ``decided`` NULL for born-dead cells; ``decided`` = trials whose collapse outcome is known, i.e. all but
    those that diverged while alive; ``dead_after_training``/``near_flat_at_init`` NULL in blocks recorded by
    schema version 1), ``dead_fraction_sum`` = sum over trials (not diverged) of the trial's fraction of dead
    hidden neurons, versions and timings (unix seconds;
    ``seconds`` = compute time). ``UNIQUE(cell_hash, trial_start, trial_stop)``; and records of one cell
    never overlap (checked in the inserting transaction), so sums over records count every trial once.
``block_arrays(block_id, name, dtype, shape, data)`` PK (block_id, name)
    Compact outcomes of a block: ``data`` is ``numpy.ndarray.tobytes()`` (C order) with numpy ``dtype``
    string (e.g. ``<i2``) and ``shape`` (JSON list). Per-trial arrays have leading axis ``trials``:
    ``first_dead_layer`` (1-based first constant hidden layer, 0 = alive) and, for trained cells,
    ``born_dead``, ``collapsed``, ``diverged``, ``dead_after_training``, ``near_flat_at_init``,
    ``trained_to_end`` (``|u1``), ``died_at_step`` (``<i4``), ``collapse_value`` ``(T, d_out)``, ``final_loss``,
    ``test_rel_l2``, ``dead_fraction`` ``(T, L_h)`` (``<f4``, NaN for a diverged trial); see
    ``training.TrainOutcomes``. Block sums (no trial axis):
    ``layer_dead_fraction_sum`` ``(L_h,)`` ``<f8``, the per-layer dead-neuron fraction summed over trials.
``artifacts(kind, name, data, created_at)`` PK (kind, name)
    Small JSON documents derived from a study that figures need but counts cannot give, e.g. ``example_fit``:
    a collapsed and a successful network evaluated on the domain. Created on demand (older files of version 1
    may lack the table; readers then see no artifacts).
``claims(cell_hash, trial_start, trial_stop, owner, host, pid, claimed_at)`` PK (cell_hash, start, stop)
    Advisory: a running process marks the block it computes so a second process picks another one first.
    Correctness never depends on claims (a stale claim only delays a block to the end of a run).
"""
from __future__ import annotations

SCHEMA_VERSION = 2
APPLICATION_ID = 0x434D4353  # 'CMCS'
APPLICATION = "collapse_mc"

TABLES = ("meta", "cells", "sweeps", "plan", "blocks", "block_arrays", "claims")  # required; artifacts is optional

DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    settings TEXT NOT NULL,
    grp TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    source TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS plan (
    sweep_hash TEXT NOT NULL REFERENCES sweeps(sweep_hash),
    cell_hash TEXT NOT NULL REFERENCES cells(cell_hash),
    position INTEGER NOT NULL,
    trials INTEGER NOT NULL CHECK (trials >= 1),
    block_size INTEGER NOT NULL CHECK (block_size >= 1),
    PRIMARY KEY (sweep_hash, cell_hash)
);
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY,
    cell_hash TEXT NOT NULL REFERENCES cells(cell_hash),
    trial_start INTEGER NOT NULL CHECK (trial_start >= 0),
    trial_stop INTEGER NOT NULL,
    trials INTEGER NOT NULL,
    born_dead INTEGER NOT NULL,
    collapsed INTEGER,
    diverged INTEGER,
    dead_fraction_sum REAL,
    dead_after_training INTEGER,
    near_flat_at_init INTEGER,
    decided INTEGER,
    package_version TEXT,
    jax_version TEXT,
    jaxlib_version TEXT,
    backend TEXT,
    device_kind TEXT,
    device_count INTEGER,
    host TEXT,
    pid INTEGER,
    started_at REAL,
    finished_at REAL,
    seconds REAL,
    UNIQUE (cell_hash, trial_start, trial_stop),
    CHECK (trial_stop > trial_start AND trials = trial_stop - trial_start),
    CHECK (born_dead BETWEEN 0 AND trials)
);
CREATE INDEX IF NOT EXISTS blocks_by_cell ON blocks (cell_hash, trial_start);
CREATE TABLE IF NOT EXISTS block_arrays (
    block_id INTEGER NOT NULL REFERENCES blocks(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    dtype TEXT NOT NULL,
    shape TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (block_id, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS claims (
    cell_hash TEXT NOT NULL,
    trial_start INTEGER NOT NULL,
    trial_stop INTEGER NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed_at REAL NOT NULL,
    PRIMARY KEY (cell_hash, trial_start, trial_stop)
);
"""
