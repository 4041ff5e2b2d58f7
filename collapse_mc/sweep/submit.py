"""A sweep over N workers started by submitit (local processes or a SLURM job array), then merged.

``submit_sweep(spec, out, workers)`` starts ``workers`` jobs, job i running ``run_sweep(spec, part_i,
shard=Shard(i, workers))`` into its own store ``<parts>/part-<i>.sqlite``, waits for them and merges the parts
into ``out`` (``store.merge``). Run it again after a failure: every part keeps its finished blocks, so only the
missing ones are computed, and the merge skips what ``out`` already holds. submitit is the optional extra
``collapse_mc[cluster]``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..config import ConfigError
from .shards import Shard
from .spec import SweepSpec, parse_spec_text

EXECUTORS = ("local", "slurm")


class SubmitError(ConfigError):
    """A submission that could not start or finish (one line)."""


def run_shard(source: str, origin: str, trials: int, db: str, index: int, count: int,
              chunk_size: int | None = None) -> dict:
    """One worker's job (module level, so submitit can pickle it): the shard's blocks into ``db``."""
    from .runner import run_sweep
    spec = parse_spec_text(source, origin=origin).with_trials(trials)
    summary = run_sweep(spec, db, shard=Shard(index, count), chunk_size=chunk_size)
    summary.pop("results", None)
    return summary


def part_paths(out, workers: int, parts_dir=None) -> list[Path]:
    """``<parts_dir>/part-<i>.sqlite``; ``parts_dir`` defaults to ``<out>.parts`` beside ``out``."""
    out = Path(out)
    d = Path(parts_dir) if parts_dir is not None else out.with_name(out.name + ".parts")
    return [d / f"part-{i}.sqlite" for i in range(workers)]


def submit_sweep(spec: SweepSpec, out, workers: int, executor: str = "local", parts_dir=None, *,
                 chunk_size: int | None = None, timeout_min: int = 24 * 60, slurm: dict | None = None) -> dict:
    """Run ``spec`` as ``workers`` shards with submitit's ``executor`` (``local`` or ``slurm``), wait, merge
    into ``out``. ``slurm``: extra submitit parameters (e.g. ``slurm_partition``, ``cpus_per_task``).

    Returns ``{"out", "parts", "logs", "shards": [per-shard run summaries], "merge": merge summary}``.
    """
    if executor not in EXECUTORS:
        raise SubmitError(f"--executor: choose one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers < 1:
        raise SubmitError(f"--workers: must be >= 1, got {workers}")
    if spec.source is None:
        raise SubmitError("sweep submit needs a spec read from TOML (a file or a shipped spec name)")
    if executor == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise SubmitError("--executor slurm: no sbatch/srun here; run it on a SLURM login node")
    try:
        import submitit
    except ImportError:
        raise SubmitError("sweep submit needs submitit: pip install 'collapse_mc[cluster]'") from None
    from ..store.merge import merge_stores

    parts = part_paths(out, workers, parts_dir)
    parts[0].parent.mkdir(parents=True, exist_ok=True)
    logs = parts[0].parent / "logs"
    ex = submitit.AutoExecutor(folder=logs, cluster=executor)
    params = {"timeout_min": int(timeout_min), "name": f"collapse-mc-{spec.name}"}
    if executor == "slurm":
        params.update({k: v for k, v in (slurm or {}).items() if v is not None})
    ex.update_parameters(**params)
    n = workers
    jobs = ex.map_array(run_shard, [spec.source] * n, [spec.origin] * n, [spec.trials] * n,
                        [str(p) for p in parts], list(range(n)), [n] * n, [chunk_size] * n)
    summaries, failed = [], []
    for i, job in enumerate(jobs):
        try:
            summaries.append(job.result())
        except Exception as e:  # noqa: BLE001 (a worker's failure, reported per shard)
            failed.append((i, job, e))
    if failed:
        i, job, e = failed[0]
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise SubmitError(f"{len(failed)} of {n} shards failed, first shard {i}/{n} ({first[:200]}; log "
                          f"{job.paths.stderr}); run the same command again: finished blocks are kept")
    return {"out": str(out), "parts": [str(p) for p in parts], "logs": str(logs), "shards": summaries,
            "merge": merge_stores(out, parts)}
