"""``collapse-mc born-dead``: the born-dead probability at initialization over a width x depth grid."""
from __future__ import annotations

import math

from ..distributed import add_distributed_options, distributed_estimator, is_main
from .common import (UsageError, add_depth_options, add_json_option, add_network_options, add_run_options,
                     check_cell_count, depths_from, finite_float, int_in, int_list, print_json, table)

COLUMNS = [("width", "width", "d"), ("depth", "depth(L_h)", "d"), ("layers", "layers", "d"),
           ("trials", "trials", ",d"), ("born_dead", "born dead", ",d"), ("p", "p", ".4f"),
           ("ci_low", "95% low", ".4f"), ("ci_high", "95% high", ".4f"),
           ("theory_single_input", "1-(1-2^-N)^L_h", ".4f"), ("nets_per_second", "nets/s", ",.0f")]


def register(sub):
    from ..config import MAX_DIM, MAX_POINTS, WEIGHT_INITS
    p = sub.add_parser(
        "born-dead",
        help="probability that a freshly initialized network is born dead (grid over width x depth)",
        description="Estimate P(born dead): some hidden layer outputs zero on the whole domain [-a, a]^d_in, so "
                    "the network is a constant from initialization on. Prints a table with 95% Wilson "
                    "intervals and, where it applies (ReLU, symmetric weights, zero biases, no residual blocks), "
                    "the single-input theory 1-(1-2^-N)^L_h (an upper bound). With d_in=1 and zero biases the "
                    "test at x=+1 and x=-1 is exact; otherwise a grid/sample of the domain is used (see the "
                    "'probes' field of --json).",
    )
    p.add_argument("--width", default="2,3,4", help="comma list or range of widths N (neurons per hidden layer)")
    add_depth_options(p, default="5,9,20")
    p.add_argument("--init", default="he_normal", choices=WEIGHT_INITS, metavar="INIT",
                   help=f"weight initializer: {', '.join(WEIGHT_INITS)} (default he_normal)")
    add_network_options(p)
    p.add_argument("--d-in", type=int_in(1, MAX_DIM), default=1, help="input dimension (default 1)")
    p.add_argument("--domain-half-width", type=finite_float(0, 1e6), default=math.sqrt(3.0),
                   help="a in the domain [-a, a]^d_in, 0 < a <= 1e6 (default sqrt(3): unit-variance inputs)")
    p.add_argument("--grid-points", type=int_in(2, MAX_POINTS), default=None,
                   help="probe grid points, d_in=1 with biases only (default 1025)")
    p.add_argument("--sample-points", type=int_in(1, MAX_POINTS), default=None,
                   help="probe points, d_in>=2 only (default 4096)")
    p.add_argument("--method", default="auto", choices=("auto", "gaussian", "dense"),
                   help="auto: the fast exact Gaussian kernel when it applies, else the dense kernel")
    add_run_options(p, trials=20000, trials_help="trials per (width, depth) cell")
    add_json_option(p, "print one JSON array, one object per cell")
    add_distributed_options(p)
    p.set_defaults(func=run)


def theory_applies(cell) -> bool:
    """Whether the single-input formula bounds this cell (``theory.single_input_applies``)."""
    from ..theory import single_input_applies
    return single_input_applies(cell.network, cell.init)


def _cells(args):
    from ..config import (MAX_WIDTH, InitConfig, NetworkConfig, ProbeConfig, born_dead_cost, check_born_dead,
                          check_cost)
    from ..deadness import BornDeadCell
    widths = int_list(args.width, "width", minimum=1, maximum=MAX_WIDTH)
    depths = depths_from(args)
    check_cell_count(len(widths) * len(depths))
    if args.grid_points is not None and args.d_in != 1:
        raise UsageError("--grid-points applies to d_in = 1 only (use --sample-points)")
    if args.sample_points is not None and args.d_in == 1:
        raise UsageError("--sample-points applies to d_in >= 2 only (use --grid-points)")
    init = InitConfig(args.init, args.bias, args.bias_value, rai_layers=args.rai_layers)
    probe = ProbeConfig(args.domain_half_width, args.grid_points or 1025, args.sample_points or 4096)
    cells = []
    for w in widths:
        for d in depths:
            net = NetworkConfig(w, d, d_in=args.d_in, activation=args.activation,
                                negative_slope=args.negative_slope, residual=args.residual)
            check_born_dead(net, init, probe)
            cell = BornDeadCell(net, init, probe, args.method)
            check_cost(f"width {w}, depth {d}", born_dead_cost(net, init, probe, cell.resolved_method), args.trials,
                       held=args.trials, chunk=args.chunk_size)
            cells.append(cell)
    return cells


def run(args) -> int:
    cells = _cells(args)   # every check before anything runs
    from ..deadness import estimate_born_dead
    estimate_born_dead = distributed_estimator(args, estimate_born_dead)
    from ..progress import Progress
    rows = []
    with Progress(args.trials * len(cells), "born-dead", enabled=False if args.no_progress else None) as bar:
        for cell in cells:
            bar.set_label(f"born-dead N={cell.network.width} L_h={cell.network.depth}")
            row = estimate_born_dead(cell, args.trials, args.seed, chunk_size=args.chunk_size, progress=bar)
            if not theory_applies(cell):
                row["theory_single_input"] = None   # no closed form here: show none rather than a wrong one
            rows.append(row)
    if not is_main():  # under --distributed, process 0 alone prints
        return 0
    if args.json:
        print_json(rows)
    else:
        init = cells[0].init
        bias = ("RAI's own biases" if init.weights == "rai" and init.rai_layers != "hidden_except_first"
                else f"{init.bias} biases" + (f" ({init.bias_value:g})" if init.bias != "zeros" else ""))
        print(f"P(born dead), {init.weights} weights, {bias}, d_in={args.d_in}, seed {args.seed}. "
              "depth = hidden layers L_h; layers = L_h + 1 (the papers' count).")
        print(f"probes: {rows[0]['probes']}")
        cols = COLUMNS if theory_applies(cells[0]) else [c for c in COLUMNS if c[0] != "theory_single_input"]
        if not theory_applies(cells[0]):
            print("theory: none shown (the single-input formula holds for ReLU, symmetric weights and zero biases)")
        print(table(rows, cols))
    return 0
