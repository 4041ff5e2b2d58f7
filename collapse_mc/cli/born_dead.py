"""``collapse-mc born-dead``: the born-dead probability at initialization over a width x depth grid."""
from __future__ import annotations

import math

from ..distributed import add_distributed_options, distributed_estimator, is_main
from .common import add_network_options, add_depth_options, depths_from, int_list, positive_int, print_json, table, UsageError

COLUMNS = [("width", "width", "d"), ("depth", "depth(L_h)", "d"), ("layers", "layers", "d"),
           ("trials", "trials", ",d"), ("born_dead", "born dead", ",d"), ("p", "p", ".4f"),
           ("ci_low", "95% low", ".4f"), ("ci_high", "95% high", ".4f"),
           ("theory_single_input", "1-(1-2^-N)^L_h", ".4f"), ("nets_per_second", "nets/s", ",.0f")]


def register(sub):
    from ..config import WEIGHT_INITS
    p = sub.add_parser(
        "born-dead",
        help="probability that a freshly initialized network is born dead (grid over width x depth)",
        description="Estimate P(born dead): some hidden layer outputs zero on the whole domain [-a, a]^d_in, so "
                    "the network is a constant from initialization on. Prints a table with 95%% Wilson "
                    "intervals and the single-input theory 1-(1-2^-N)^L_h (an upper bound). With d_in=1 and "
                    "zero biases the test at x=+1 and x=-1 is exact; otherwise a grid/sample of the domain is "
                    "used (see the 'probes' field of --json).",
    )
    p.add_argument("--width", default="2,3,4", help="comma list or range of widths N (neurons per hidden layer)")
    add_depth_options(p, default="5,9,20")
    p.add_argument("--init", default="he_normal", choices=WEIGHT_INITS, metavar="INIT",
                   help=f"weight initializer: {', '.join(WEIGHT_INITS)} (default he_normal)")
    add_network_options(p)
    p.add_argument("--trials", default="20000", help="trials per (width, depth) cell")
    p.add_argument("--seed", type=int, default=0, help="root seed (trial keys are fold_in(seed, cell, trial))")
    p.add_argument("--d-in", type=int, default=1, help="input dimension")
    p.add_argument("--domain-half-width", type=float, default=math.sqrt(3.0),
                   help="a in the domain [-a, a]^d_in (default sqrt(3): unit-variance inputs)")
    p.add_argument("--grid-points", type=int, default=1025, help="probe grid points for d_in=1 with biases")
    p.add_argument("--sample-points", type=int, default=4096, help="probe points for d_in>=2")
    p.add_argument("--method", default="auto", choices=("auto", "gaussian", "dense"),
                   help="auto: the fast exact Gaussian kernel when it applies, else the dense kernel")
    p.add_argument("--chunk-size", default=None, help="trials per compiled chunk (bounds memory)")
    p.add_argument("--json", action="store_true", help="print one JSON array, one object per cell")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_distributed_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import InitConfig, NetworkConfig, ProbeConfig
    widths = int_list(args.width, "width")
    depths = depths_from(args)
    trials = positive_int("trials", args.trials)
    chunk = positive_int("chunk-size", args.chunk_size) if args.chunk_size is not None else None
    if args.d_in < 1:
        raise UsageError(f"--d-in: must be >= 1, got {args.d_in}")
    init = InitConfig(args.init, args.bias, args.bias_value, rai_layers=args.rai_layers)
    probe = ProbeConfig(args.domain_half_width, args.grid_points, args.sample_points)
    cells = []
    for w in widths:
        for d in depths:
            net = NetworkConfig(w, d, d_in=args.d_in, activation=args.activation,
                                negative_slope=args.negative_slope, residual=args.residual)
            cells.append(_make_cell(net, init, probe, args.method))

    from ..deadness import estimate_born_dead
    estimate_born_dead = distributed_estimator(args, estimate_born_dead)
    from ..progress import Progress
    rows = []
    with Progress(trials * len(cells), "born-dead", enabled=False if args.no_progress else None) as bar:
        for cell in cells:
            bar.set_label(f"born-dead N={cell.network.width} L_h={cell.network.depth}")
            rows.append(estimate_born_dead(cell, trials, args.seed, chunk_size=chunk, progress=bar))
    if not is_main():  # under --distributed, process 0 alone prints
        return 0
    if args.json:
        print_json(rows)
    else:
        print(f"P(born dead), {args.init} weights, {args.bias} biases, d_in={args.d_in}, seed {args.seed}. "
              "depth = hidden layers L_h; layers = L_h + 1 (the papers' count).")
        print(f"probes: {rows[0]['probes']}")
        print(table(rows, COLUMNS))
    return 0


def _make_cell(net, init, probe, method):
    from ..deadness import BornDeadCell
    return BornDeadCell(net, init, probe, method)
