"""``collapse-mc estimate``: train many independent networks and estimate P(collapse) and P(born dead)."""
from __future__ import annotations

import math

from ..distributed import add_distributed_options, distributed_estimator, is_main
from .common import add_network_options, UsageError, add_depth_options, depths_from, positive_int, print_json


def register(sub):
    from ..config import WEIGHT_INITS
    from ..training.config import DEFAULT_STEPS, LOSSES, OPTIMIZERS, SCHEDULES
    from ..training.targets import TARGET_NAMES

    p = sub.add_parser(
        "estimate",
        help="train many networks and estimate the probability of collapse to a constant",
        description="Train --trials independent networks (each with its own initialization, training set and "
                    "minibatches, all from fold_in(seed, cell, trial)) in one compiled, vectorized program and "
                    "classify each: born dead (a hidden layer is constant on the domain at initialization), "
                    "collapsed (after training the output is constant on a dense test grid: max - min <= "
                    "collapse-rtol x the target's standard deviation; with MSE the constant is the target mean, "
                    "with L1 a median), diverged (non-finite loss or parameters), or trained. Prints P(collapse) "
                    "and P(born dead) with 95%% Wilson intervals and the collapse constants next to the target's "
                    "mean and median.",
    )
    p.add_argument("--width", default="2", help="neurons per hidden layer N (default 2)")
    add_depth_options(p, default="9", multi=False)
    p.add_argument("--init", default="he_normal", choices=WEIGHT_INITS, metavar="INIT",
                   help=f"weight initializer: {', '.join(WEIGHT_INITS)} (default he_normal; rai = randomized "
                        "asymmetric initialization)")
    add_network_options(p)
    p.add_argument("--target", default="abs", metavar="TARGET",
                   help=f"{', '.join(TARGET_NAMES)}: |x|, x sin(5x), 1{{x>0}} + 0.2 sin(5x), "
                        "(|x1+x2|, |x1-x2|) (default abs; f4 sets d_in = d_out = 2)")
    p.add_argument("--loss", default="mse", metavar="LOSS", help=f"{' | '.join(LOSSES)} (default mse)")
    p.add_argument("--optimizer", default="adam", metavar="OPT",
                   help=f"{' | '.join(OPTIMIZERS)} (default adam); sgd = heavy-ball momentum, rmsprop decay = "
                        "--beta2")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--momentum", type=float, default=0.0, help="momentum for sgd / nesterov / rmsprop (default 0)")
    p.add_argument("--beta1", type=float, default=0.9, help="Adam beta1 (default 0.9)")
    p.add_argument("--beta2", type=float, default=0.999, help="Adam beta2 / RMSprop decay (default 0.999)")
    p.add_argument("--schedule", default="constant", metavar="SCHED",
                   help=f"learning-rate schedule: {' | '.join(SCHEDULES)} (default constant)")
    p.add_argument("--steps", default=str(DEFAULT_STEPS), help=f"training steps (default {DEFAULT_STEPS})")
    p.add_argument("--batch-size", default="64",
                   help="minibatch size, drawn with replacement each step; 0 = full batch (default 64)")
    p.add_argument("--n-train", default="3000", help="training points per trial, uniform on the domain (default 3000)")
    p.add_argument("--target-scale", type=float, default=None,
                   help="rescale targets to this standard deviation (default: natural scale)")
    p.add_argument("--normalize-target", action="store_true",
                   help="subtract the target's mean and divide by its standard deviation")
    p.add_argument("--domain-half-width", type=float, default=math.sqrt(3.0),
                   help="a in the domain [-a, a]^d_in (default sqrt(3))")
    p.add_argument("--test-points", default="1025", help="dense test grid size used to classify (default 1025)")
    p.add_argument("--collapse-rtol", type=float, default=1e-2,
                   help="collapsed when max - min of the output on the test grid <= this x the target's "
                        "standard deviation (default 1e-2)")
    p.add_argument("--trials", default="1000", help="independent networks (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="root seed (trial keys are fold_in(seed, cell, trial))")
    p.add_argument("--chunk-size", default=None, help="trials per compiled chunk (bounds memory)")
    p.add_argument("--after-death", default="train", choices=("train", "stop", "full"),
                   help="what a network does once some hidden layer is dead on its training set (checked every "
                        "100 steps): train = keep training what can still move (the constant output) on a cheap "
                        "one-point path, exact (default); stop = stop it (its collapse constant and final loss "
                        "are then those at its death and left out of the medians; probabilities unchanged); "
                        "full = train it with full steps like a live one (slowest, the reference)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_distributed_options(p)
    p.set_defaults(func=run)


def make_cell(args):
    """The ``TrainCell`` described by the parsed arguments (raises ConfigError/UsageError on bad input)."""
    from ..config import InitConfig, NetworkConfig
    from ..training import TrainCell, TrainConfig
    from ..training.targets import BUILTIN, TARGET_NAMES

    if args.target not in BUILTIN:
        raise UsageError(f"--target: unknown target {args.target!r}; choose one of {', '.join(TARGET_NAMES)}")
    tgt = BUILTIN[args.target]
    depth = depths_from(args, multi=False)[0]
    batch = positive_int("batch-size", args.batch_size, minimum=0)
    net = NetworkConfig(positive_int("width", args.width), depth, d_in=tgt.d_in, d_out=tgt.d_out,
                        activation=args.activation, negative_slope=args.negative_slope, residual=args.residual)
    init = InitConfig(args.init, args.bias, args.bias_value, rai_layers=args.rai_layers)
    train = TrainConfig(target=args.target, loss=args.loss, optimizer=args.optimizer, lr=args.lr,
                        momentum=args.momentum, beta1=args.beta1, beta2=args.beta2,
                        steps=positive_int("steps", args.steps), batch_size=batch or None,
                        n_train=positive_int("n-train", args.n_train), target_scale=args.target_scale,
                        normalize_target=args.normalize_target, schedule=args.schedule,
                        half_width=args.domain_half_width, test_points=positive_int("test-points", args.test_points, 2),
                        collapse_rtol=args.collapse_rtol)
    return TrainCell(net, init, train)


def _fmt_list(v) -> str:
    return ", ".join("-" if x is None else f"{x:.4f}" for x in v)


def run(args) -> int:
    cell = make_cell(args)
    trials = positive_int("trials", args.trials)
    chunk = positive_int("chunk-size", args.chunk_size) if args.chunk_size is not None else None

    from ..progress import Progress
    from ..training import estimate_training
    estimate_training = distributed_estimator(args, estimate_training)

    n, t = cell.network, cell.train
    label = f"train N={n.width} L_h={n.depth} {cell.init.weights} {t.target} {t.loss}"
    with Progress(trials, label, enabled=False if args.no_progress else None) as bar:
        rec = estimate_training(cell, trials, args.seed, chunk_size=chunk, progress=bar,
                                after_death=args.after_death)
    if not is_main():  # under --distributed, process 0 alone prints
        return 0
    if args.json:
        print_json(rec)
        return 0
    batch = "full batch" if rec["batch_size"] is None else f"batch {rec['batch_size']}"
    print(f"width {n.width}, depth {n.depth} hidden layers (= {n.layers} layers), {cell.init.weights} init; "
          f"target {rec['target']}, {rec['loss'].upper()} loss, {rec['optimizer']} lr {rec['lr']:g}, "
          f"{rec['steps']} steps, {batch}, n_train {rec['n_train']}; seed {args.seed}")
    print(f"trials {rec['trials']:,}: collapsed {rec['collapsed']:,}, dead after training "
          f"{rec['dead_after_training']:,}, born dead {rec['born_dead']:,}, diverged {rec['diverged']:,}, "
          f"not collapsed {rec['trained']:,} (alive, output not flat; {rec['fit_within_10pct']:,} of them fit the "
          "target within 10 % relative L2 error)")
    for label, key in (("P(collapse)", "p_collapse"), ("P(dead after training)", "p_dead_after_training"),
                       ("P(born dead)", "p_born_dead"), ("P(near flat at init)", "p_near_flat_at_init"),
                       ("P(diverged)", "p_diverged")):
        if rec[key] is None:
            print(f"{label:<24}= -  (no trial decided: every trial diverged while alive)")
        else:
            print(f"{label:<24}= {rec[key]:.4f}  95% CI [{rec[key + '_ci_low']:.4f}, {rec[key + '_ci_high']:.4f}]")
    print(f"  P(collapse) and P(dead after training) are over the {rec['decided']:,} trials whose outcome is known "
          "(all but those that diverged while alive); the others over all trials")
    if rec["died_at_step_median"] is not None:
        print(f"networks that died in training: {rec['died_in_training']:,}, median death step "
              f"{rec['died_at_step_median']:g} (checked every 100 steps)")
    if rec["stopped_at_death"]:
        print(f"{rec['stopped_at_death']:,} dead networks stopped at death (--after-death stop): their constants "
              "are not in the medians")
    print(f"collapse constant (median over collapsed): {_fmt_list(rec['collapse_value_median'])}; "
          f"target mean {_fmt_list(rec['target_mean'])}, median {_fmt_list(rec['target_median'])}")
    if rec["test_rel_l2_median_trained"] is not None:
        print(f"median test relative L2 error of non-collapsed nets: {rec['test_rel_l2_median_trained']:.4f}")
    print(f"{rec['seconds']:.1f} s ({rec['compile_seconds']:.1f} s compiling, {rec['run_seconds']:.1f} s running), "
          f"{rec['net_steps_per_second']:,.0f} net-steps/s")
    return 0
