"""collapse_mc: Monte Carlo studies of why deep, narrow ReLU networks collapse.

Depth convention: ``depth`` is the number of hidden layers L_h; the papers' "L-layer network" counts the output
layer too, so ``layers = depth + 1`` (a "10-layer" network has depth 9).

Pipeline: ``nets`` (networks, initializers) -> ``training`` -> classification -> ``estimates`` -> ``store``
-> ``analysis`` and ``figures``; ``deadness`` is the born-dead Monte Carlo at initialization.
"""
__version__ = "0.1.0"

from .config import InitConfig, NetworkConfig, ProbeConfig, depth_from_layers, layers_from_depth

__all__ = ["InitConfig", "NetworkConfig", "ProbeConfig", "depth_from_layers", "layers_from_depth", "__version__"]
