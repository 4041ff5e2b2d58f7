"""Store example fits (a collapsed and a successful trained network against the target) for a sweep's cells."""
from __future__ import annotations


def store_example_fits(spec, db, quick: bool = False) -> list[str]:
    """After a trained sweep: for every 1-D trained cell, store an ``example_fit`` artifact (its first collapsed
    trial and its best trained trial, re-trained and evaluated on a grid) for the example-fits figure; with
    ``quick``, for the first such cell only. Returns the artifact names. Cells already having one are skipped
    (re-running only redraws)."""
    from ..store import Store
    from ..training.fits import example_fit

    names = []
    with Store(db) as store:
        have = {n for n, _ in store.artifacts("example_fit")}
        for group in spec.groups():
            for sc in group:
                if sc.kind != "trained" or sc.cell.network.d_in != 1:
                    continue
                s = sc.settings
                name = f"{s.get('target')}_{s.get('loss')}_N{s['width']}_Lh{s['depth']}_{s['init']}"
                if name in have:
                    continue
                outcomes = store.outcomes(sc.cell_hash)
                if "collapsed" not in outcomes or not len(outcomes["trial"]):
                    continue
                art = example_fit(sc.cell, outcomes, sc.seed,
                                  title=f"target {s.get('target')}, {str(s.get('loss')).upper()}: width {s['width']}, "
                                        f"{s['depth']} hidden layers, {s['init']}")
                if art is not None:
                    store.put_artifact("example_fit", name, art)
                    names.append(name)
                    if quick:
                        return names
    return names
