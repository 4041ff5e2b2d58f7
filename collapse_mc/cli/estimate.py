"""``collapse-mc estimate``: train many independent networks and estimate P(collapse) and P(born dead)."""
from __future__ import annotations

import argparse
import dataclasses
import math

from ..distributed import add_distributed_options, distributed_estimator, is_main
from .common import (add_depth_options, add_json_option, add_network_options, add_run_options, depths_from,
                     finite_float, int_in, one_of, print_json)

# Help for each TrainConfig field: the flags are generated from TrainConfig's fields (names, defaults, types),
# so a new training setting needs a line here and nothing else. {default} is filled in from the dataclass.
TRAIN_HELP = {
    "target": "{targets}: |x|, x sin(5x), 1{{x>0}} + 0.2 sin(5x), (|x1+x2|, |x1-x2|) (default {default}; f4 sets "
              "d_in = d_out = 2)",
    "loss": "{choices} (default {default})",
    "optimizer": "adam | sgd | nesterov | rmsprop (with --lr, --momentum, --beta1, --beta2), or any other optax "
                 "alias by name, with its own settings as --optimizer-option (default {default}; sgd = heavy-ball "
                 "momentum, rmsprop decay = --beta2). Known: {choices}",
    "optimizer_options": "an optimizer's own setting, e.g. --optimizer adamw --optimizer-option weight_decay=1e-4 "
                         "(repeat for several; numbers, true/false or text)",
    "lr": "learning rate (default {default})",
    "momentum": "momentum, for sgd / nesterov / rmsprop only (default {default})",
    "beta1": "Adam beta1, for adam only (default {default})",
    "beta2": "Adam beta2 / RMSprop decay, for adam and rmsprop only (default {default})",
    "steps": "training steps (default {default})",
    "batch_size": "minibatch size, drawn with replacement each step; 0 = full batch (default {default})",
    "n_train": "training points per trial, uniform on the domain (default {default})",
    "target_scale": "rescale targets to this standard deviation (default: natural scale)",
    "normalize_target": "subtract the target's mean and divide by its standard deviation",
    "schedule": "learning-rate schedule: {choices} (default {default})",
    "half_width": "a in the domain [-a, a]^d_in (default sqrt(3))",
    "test_points": "dense test grid size used to classify (default {default})",
    "collapse_rtol": "collapsed when max - min of the output on the test grid <= this x the target's standard "
                     "deviation (default {default})",
}
FLAG_NAMES = {"half_width": "domain-half-width"}   # field -> flag, where they differ


def _train_choices():
    from ..training.config import LOSSES, OPTIMIZERS, SCHEDULES
    from ..training.targets import TARGET_NAMES
    return {"target": TARGET_NAMES, "loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}


class _AppendPair(argparse.Action):
    """Collects repeated ``KEY=VALUE`` flags into a tuple of pairs (default ``()``, TrainConfig's)."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, tuple(getattr(namespace, self.dest) or ()) + (value,))


def option_pair(text: str) -> tuple:
    """``KEY=VALUE`` -> ``(key, value)`` with the value read as true/false, an integer, a number or text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. weight_decay=1e-4), got {text!r}")
    value: object = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{key} must be finite, got {raw}")
    return key, value


def add_train_options(p) -> None:
    """One flag per ``TrainConfig`` field, with the field's default; ranges are checked by ``TrainConfig``."""
    from ..config import MAX_POINTS, MAX_STEPS
    from ..training import TrainConfig
    choices = _train_choices()
    ints = {"steps": int_in(1, MAX_STEPS), "n_train": int_in(1, MAX_POINTS), "test_points": int_in(2, MAX_POINTS),
            "batch_size": int_in(0, MAX_POINTS)}
    g = p.add_argument_group("training (the fields of TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        if f.name not in TRAIN_HELP:
            raise RuntimeError(f"TrainConfig.{f.name} has no command-line help in cli/estimate.TRAIN_HELP")
        flag = "--" + FLAG_NAMES.get(f.name, f.name.replace("_", "-"))
        default = f.default
        sep = ", " if f.name == "optimizer" else " | "
        text = TRAIN_HELP[f.name].format(default=default, choices=sep.join(choices.get(f.name, ())),
                                         targets=", ".join(choices["target"]))
        if f.name == "optimizer_options":
            g.add_argument("--optimizer-option", dest=f.name, action=_AppendPair, type=option_pair, default=(),
                           metavar="KEY=VALUE", help=text)
        elif f.name in choices:
            g.add_argument(flag, dest=f.name, default=default, type=one_of(f.name, choices[f.name]),
                           metavar=f.name.upper(), help=text)
        elif isinstance(default, bool):
            g.add_argument(flag, dest=f.name, action="store_true", help=text)
        elif f.name in ints:
            g.add_argument(flag, dest=f.name, type=ints[f.name], default=default, help=text)
        else:
            g.add_argument(flag, dest=f.name, type=finite_float(), default=default, help=text)


def register(sub):
    from ..config import MAX_WIDTH, WEIGHT_INITS

    p = sub.add_parser(
        "estimate",
        help="train many networks and estimate the probability of collapse to a constant",
        description="Train --trials independent networks (each with its own initialization, training set and "
                    "minibatches, all from fold_in(seed, cell, trial)) in one compiled, vectorized program and "
                    "classify each: born dead (a hidden layer is constant on the domain at initialization), "
                    "collapsed (after training the output is constant on a dense test grid: max - min <= "
                    "collapse-rtol x the target's standard deviation; with MSE the constant is the target mean, "
                    "with L1 a median), diverged (non-finite loss or parameters), or trained. Prints P(collapse) "
                    "and P(born dead) with 95% Wilson intervals and the collapse constants next to the target's "
                    "mean and median.",
    )
    p.add_argument("--width", type=int_in(1, MAX_WIDTH), default=2, help="neurons per hidden layer N (default 2)")
    add_depth_options(p, default="9", multi=False)
    p.add_argument("--init", default="he_normal", choices=WEIGHT_INITS, metavar="INIT",
                   help=f"weight initializer: {', '.join(WEIGHT_INITS)} (default he_normal; rai = randomized "
                        "asymmetric initialization)")
    add_network_options(p)
    p.add_argument("--model", metavar="PACKAGE.MODULE:NAME",
                   help="train your own Flax (linen) model instead of the built-in MLP: a callable (network, init) "
                        "-> flax.linen.Module importable from the Python path, whose hidden layers are sown with "
                        "self.sow('intermediates', name, h) (see collapse_mc.nets.observe); it gets --width, "
                        "--depth and the input/output sizes as its NetworkConfig. Trained by autodiff on the generic "
                        "path (no cheap path for dead networks); recorded by name and source hash")
    p.add_argument("--data", metavar="FILE.npz",
                   help="train on your data instead of the uniform domain and --target: an .npz with x_train, "
                        "y_train (and optionally x_test, y_test; else the training set is the test set). Float "
                        "targets = regression, integer labels = classification (use --loss "
                        "softmax_cross_entropy). Constant on the domain then means constant over the given "
                        "inputs; recorded by content hash")
    add_train_options(p)
    add_run_options(p, trials=1000, trials_help="independent networks")
    p.add_argument("--after-death", default="train", choices=("train", "stop", "full"),
                   help="what a network does once some hidden layer is dead on its training set (checked every "
                        "100 steps): train = keep training what can still move (the constant output) on a cheap "
                        "one-point path, exact (default); stop = stop it (its collapse constant and final loss "
                        "are then those at its death and left out of the medians; probabilities unchanged); "
                        "full = train it with full steps like a live one (slowest, the reference)")
    add_json_option(p, "print one JSON object")
    add_distributed_options(p)
    p.set_defaults(func=run)


def make_cell(args):
    """The ``TrainCell`` described by the parsed arguments (raises ConfigError/UsageError on bad input)."""
    from ..config import InitConfig, NetworkConfig
    from ..training import TrainCell, TrainConfig
    from ..training.targets import BUILTIN

    data = model = None
    if args.data is not None:
        from ..training.data import Dataset
        data = Dataset.from_npz(args.data)
    if args.model is not None:
        from ..nets.user_model import resolve_model
        model = resolve_model(args.model)
    d_in, d_out = (BUILTIN[args.target].d_in, BUILTIN[args.target].d_out) if data is None else (data.d_in, data.d_out)
    depth = depths_from(args, multi=False)[0]
    net = NetworkConfig(args.width, depth, d_in=d_in, d_out=d_out, activation=args.activation,
                        negative_slope=args.negative_slope, residual=args.residual)
    init = InitConfig(args.init, args.bias, args.bias_value, rai_layers=args.rai_layers)
    train = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    return TrainCell(net, init, train, model=model, data=data)


def _fmt_list(v) -> str:
    return ", ".join("-" if x is None else f"{x:.4f}" for x in v)


def run(args) -> int:
    from ..config import check_cost
    cell = make_cell(args)
    trials, chunk = args.trials, args.chunk_size
    check_cost(f"width {cell.network.width}, depth {cell.network.depth}", cell.cost(), trials, held=trials,
               chunk=chunk)

    from ..progress import Progress
    from ..training import estimate_training
    estimate_training = distributed_estimator(args, estimate_training)

    n, t = cell.network, cell.train
    what = t.target if cell.data is None else cell.data.name
    label = f"train N={n.width} L_h={n.depth} {cell.init.weights} {what} {t.loss}"
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
          f"not collapsed {rec['trained']:,} (alive, output not flat"
          + ("; classification)" if rec.get("test_accuracy_quartiles") is not None else
             f"; {rec['fit_within_10pct']:,} of them fit the target within 10 % relative L2 error)"))
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
    if rec["target_mean"] is not None:
        print(f"collapse constant (median over collapsed): {_fmt_list(rec['collapse_value_median'])}; "
              f"target mean {_fmt_list(rec['target_mean'])}, median {_fmt_list(rec['target_median'])}")
    if rec["test_rel_l2_median_trained"] is not None:
        print(f"median test relative L2 error of non-collapsed nets: {rec['test_rel_l2_median_trained']:.4f}")
    if rec.get("test_accuracy_quartiles"):
        q = rec["test_accuracy_quartiles"]
        print(f"test accuracy (not diverged): quartiles {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}, mean "
              f"{rec['test_accuracy_mean']:.3f}")
    print(f"{rec['seconds']:.1f} s ({rec['compile_seconds']:.1f} s compiling, {rec['run_seconds']:.1f} s running), "
          f"{rec['net_steps_per_second']:,.0f} net-steps/s")
    return 0
