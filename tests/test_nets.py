"""Initializers (RAI statistics in particular) and the scanned MLP against a plain numpy forward pass."""
import math

import jax
import numpy as np
import pytest

from collapse_mc.config import InitConfig, NetworkConfig
from collapse_mc.nets import MLP, init_params, initializers
from collapse_mc.nets.observe import hidden_layers


def test_rai_exactly_one_beta_entry_per_neuron_and_statistics():
    fan_in, fan_out, draws = 3, 4, 6000
    init = initializers.rai()
    keys = jax.random.split(jax.random.key(0), draws)
    a = np.asarray(jax.vmap(lambda k: init(k, (fan_in + 1, fan_out)))(keys))       # (draws, fan_in+1, fan_out)
    # rebuild the underlying Gaussian matrix from the same key splits: outside the replaced entry, a == v
    def gaussian_part(k):
        k_v, _, _ = jax.random.split(k, 3)
        return 0.6007 / math.sqrt(fan_in) * jax.random.normal(k_v, (fan_in + 1, fan_out))
    v = np.asarray(jax.vmap(gaussian_part)(keys))
    replaced = a != v
    assert np.all(replaced.sum(axis=1) == 1)                                     # exactly one per neuron
    beta = a[replaced]
    assert np.all((beta >= 0) & (beta <= 1))
    n = beta.size
    # Beta(2,1): mean 2/3, variance 1/18, CDF x^2
    assert abs(beta.mean() - 2 / 3) < 4 * math.sqrt(1 / 18 / n)
    assert abs(beta.var() - 1 / 18) < 0.01
    for x in (0.25, 0.5, 0.75):
        assert abs((beta <= x).mean() - x * x) < 4 * math.sqrt(x * x * (1 - x * x) / n)
    # the position is uniform over the fan_in + 1 entries (weights and bias): chi-square, 3 dof, p ~ 1e-4
    pos = np.argmax(replaced, axis=1).ravel()
    counts = np.bincount(pos, minlength=fan_in + 1)
    expected = n / (fan_in + 1)
    assert ((counts - expected) ** 2 / expected).sum() < 21.1
    # the other entries: mean 0, variance sigma^2 = 0.6007^2 / fan_in
    rest = a[~replaced]
    sigma2 = 0.6007 ** 2 / fan_in
    assert abs(rest.mean()) < 4 * math.sqrt(sigma2 / rest.size)
    assert rest.var() == pytest.approx(sigma2, rel=0.03)


@pytest.mark.parametrize("name,var", [("he_normal", 2 / 8), ("lecun_normal", 1 / 8), ("he_uniform", 2 / 8),
                                      ("glorot_uniform", 2 / (8 + 4000))])
def test_weight_initializer_variances(name, var):
    init = initializers.layer_initializer(name, "constant", 0.5)
    a = np.asarray(init(jax.random.key(1), (9, 8 * 500)))     # fan_in 8
    w, b = a[:-1], a[-1]
    assert w.var() == pytest.approx(var, rel=0.05)
    assert np.all(b == 0.5)
    if name.endswith("normal"):   # plain (untruncated) normal: some draws beyond 2 standard deviations
        assert (np.abs(w) > 2 * math.sqrt(var)).mean() == pytest.approx(0.0455, abs=0.01)


def test_orthogonal_and_normal_bias():
    a = np.asarray(initializers.layer_initializer("orthogonal", "normal", 0.3)(jax.random.key(2), (65, 64)))
    w = a[:-1]
    np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(64), atol=1e-4)
    assert a[-1].std() == pytest.approx(0.3, rel=0.35)


def _numpy_forward(params, x, residual=False):
    def aff(h, a):
        return h @ a[:-1] + a[-1]
    h = np.maximum(aff(x, np.asarray(params["input"])), 0)
    hs = [h]
    if "hidden" in params:
        for a in np.asarray(params["hidden"]["affine"]):
            z = np.maximum(aff(h, a), 0)
            h = h + z if residual else z
            hs.append(h)
    return aff(h, np.asarray(params["output"])), np.stack(hs)


@pytest.mark.parametrize("depth,residual", [(1, False), (5, False), (5, True)])
def test_mlp_matches_numpy_forward_and_reports_layers(depth, residual):
    net = NetworkConfig(3, depth, d_in=2, d_out=2, residual=residual)
    init = InitConfig("he_normal", "normal", 0.1)
    params = init_params(net, init, jax.random.key(3))
    x = np.random.default_rng(0).uniform(-1, 1, (17, 2)).astype(np.float32)
    y, state = MLP(net, init).apply({"params": params}, x, mutable=["intermediates"])
    post = np.stack([np.asarray(h) for h in hidden_layers(state["intermediates"])])
    y_ref, hs = _numpy_forward(params, x, residual)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-5, atol=1e-5)
    assert post.shape == (depth, 17, 3)
    np.testing.assert_allclose(post, hs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(MLP(net, init).apply({"params": params}, x)), np.asarray(y))


def test_rai_layers_setting():
    net = NetworkConfig(4, 3)
    for layers, expect in (("hidden", ("rai", "rai", "he_normal")), ("all", ("rai", "rai", "rai")),
                           ("hidden_except_first", ("he_normal", "rai", "he_normal"))):
        init = InitConfig("rai", rai_layers=layers)
        assert tuple(init.layer_init_name(k) for k in ("first", "hidden", "output")) == expect
    p = init_params(net, InitConfig("rai"), jax.random.key(0))
    assert np.all(np.asarray(p["output"])[-1] == 0)               # He output layer: zero bias
    assert np.all((np.asarray(p["hidden"]["affine"]) > 0).sum(axis=1) >= 1)   # a positive entry per neuron
