"""Networks and initializers (the first stage of the pipeline)."""
from .initializers import affine, layer_initializer, rai
from .mlp import MLP, activation_fn, affine_apply, init_params

__all__ = ["MLP", "activation_fn", "affine", "affine_apply", "init_params", "layer_initializer", "rai"]
