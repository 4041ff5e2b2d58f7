"""A native CPU kernel for the hidden stack of narrow networks (widths 1-16), compiled once per machine.

``hidden_stack.cc`` (next to this file) is the stack's forward and backward pass as XLA FFI handlers, the
deadness report and death check, Adam's update, and whole training steps of a ReLU MLP on the MSE with Adam
(``train_steps``, its minibatches drawn with ``jax.random``'s arithmetic): on a CPU it trains a width-12 stack
several times faster than XLA's code for the same arithmetic (BENCHMARKS.md). It is
compiled on first use with the host's C++ compiler (``$CXX``, else ``c++``/``g++``; ``-O3 -march=native``)
into the per-user cache (``$COLLAPSE_MC_NATIVE_DIR``, else ``$XDG_CACHE_HOME/collapse_mc/native``), keyed by
the source, the flags, the compiler, jaxlib and the CPU, so a later process only loads it. Where it cannot
be built (no compiler, a read-only cache), training uses XLA's code, with one warning; results agree to
float32 rounding (summation orders differ), not bit for bit.

``COLLAPSE_MC_NO_NATIVE=1`` turns the kernel off (XLA's code everywhere), as ``COLLAPSE_MC_NO_CACHE=1`` turns
off the compilation cache. Only the CPU backend uses it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import resources

DISABLE_ENV = "COLLAPSE_MC_NO_NATIVE"
DIR_ENV = "COLLAPSE_MC_NATIVE_DIR"
MAX_WIDTH = 16
FORWARD = "collapse_mc_hidden_stack_forward_v1"
BACKWARD = "collapse_mc_hidden_stack_backward_v1"
REPORT = "collapse_mc_hidden_stack_report_v1"
ADAM = "collapse_mc_adam_update_v1"
ANY_DEAD = "collapse_mc_hidden_stack_any_dead_v1"
TRAIN = "collapse_mc_train_steps_v1"
MINIBATCH = "collapse_mc_minibatch_v1"
DEAD_CHECK_PREFIX = 128  # points of the cheap first pass of ``stack_any_dead``
FLAGS = ("-O3", "-march=native", "-std=c++17", "-fPIC", "-shared", "-w")
PARTS = (1, 2, 3)  # hidden_stack.cc's CMC_PART: compiled in parallel

_lock = threading.Lock()
_state: dict = {}  # the library, built and loaded at most once per process
_override: ContextVar[bool | None] = ContextVar("collapse_mc_native_override", default=None)


def enabled() -> bool:
    """False when ``COLLAPSE_MC_NO_NATIVE`` is set (to anything but "" or "0", as ``COLLAPSE_MC_NO_CACHE``)."""
    return os.environ.get(DISABLE_ENV, "") in ("", "0")


def cache_dir() -> str:
    if os.environ.get(DIR_ENV):
        return os.environ[DIR_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "collapse_mc", "native")


def _compiler() -> str | None:
    for c in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if c and shutil.which(c):
            return c
    return None


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU model and feature flags (Linux), else the platform."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _build(source: bytes, compiler: str) -> str:
    """Path of the compiled library, building it (under a file lock) when the cache has none."""
    import jax
    import jaxlib
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version.encode(),
                                     jaxlib.__version__.encode(), _cpu_signature().encode()])).hexdigest()[:20]
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"hidden_stack-{key}.so")
    if os.path.exists(path):
        return path
    import fcntl
    with open(os.path.join(folder, f".build-{key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same library
        if os.path.exists(path):
            return path
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            src = os.path.join(tmp, "hidden_stack.cc")
            with open(src, "wb") as f:
                f.write(source)
            out = os.path.join(tmp, "hidden_stack.so")
            include = f"-I{jax.ffi.include_dir()}"
            # the parts (forward, report and Adam; backward; whole training steps) compile in parallel
            objects = [os.path.join(tmp, f"part{k}.o") for k in PARTS]
            jobs = [subprocess.Popen([compiler, *FLAGS, f"-DCMC_PART={k}", include, "-c", src, "-o", obj],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                    for k, obj in zip(PARTS, objects)]
            errors = [job.communicate(timeout=600)[1] if job.returncode is None else "" for job in jobs]
            errors = [err or f"exit status {job.returncode}" if job.returncode else "" for err, job in zip(errors, jobs)]
            link = [compiler, *FLAGS, *objects, "-o", out]
            if not any(errors):
                res = subprocess.run(link, capture_output=True, text=True, timeout=600)
                errors.append(res.stderr if res.returncode else "")
            if any(errors) or not os.path.exists(out):
                detail = " ".join(e.strip() for e in errors if e).strip()
                raise RuntimeError(f"{compiler} {' '.join(FLAGS)} ... failed: {detail[-400:]}")
            os.replace(out, path)  # atomic: a reader sees the whole library or none
    return path


def available() -> bool:
    """Whether the kernel is built, loaded and registered with XLA for the CPU (building it on first call).
    False, with one warning naming the reason, when it cannot be; False without a warning when disabled."""
    with _lock:
        if "ok" in _state:
            return _state["ok"]
        _state.update(ok=False, reason=None, path=None)
        if not enabled():
            _state["reason"] = f"disabled by {DISABLE_ENV}=1"
            return False
        try:
            import jax
            compiler = _compiler()
            if compiler is None:
                raise RuntimeError("no C++ compiler found ($CXX, c++, g++, clang++)")
            source = resources.files(__name__).joinpath("hidden_stack.cc").read_bytes()
            path = _build(source, compiler)
            lib = ctypes.cdll.LoadLibrary(path)
            jax.ffi.register_ffi_target(FORWARD, jax.ffi.pycapsule(lib.CollapseMcHiddenStackForward),
                                        platform="cpu")
            jax.ffi.register_ffi_target(BACKWARD, jax.ffi.pycapsule(lib.CollapseMcHiddenStackBackward),
                                        platform="cpu")
            jax.ffi.register_ffi_target(REPORT, jax.ffi.pycapsule(lib.CollapseMcHiddenStackReport), platform="cpu")
            jax.ffi.register_ffi_target(ADAM, jax.ffi.pycapsule(lib.CollapseMcAdamUpdate), platform="cpu")
            jax.ffi.register_ffi_target(ANY_DEAD, jax.ffi.pycapsule(lib.CollapseMcHiddenStackAnyDead),
                                        platform="cpu")
            jax.ffi.register_ffi_target(TRAIN, jax.ffi.pycapsule(lib.CollapseMcTrainSteps), platform="cpu")
            jax.ffi.register_ffi_target(MINIBATCH, jax.ffi.pycapsule(lib.CollapseMcMinibatch), platform="cpu")
            _state.update(ok=True, path=path, lib=lib)
        except Exception as e:  # noqa: BLE001 - any failure means: use XLA's code
            _state["reason"] = f"{type(e).__name__}: {e}"
            warnings.warn(f"collapse_mc: the native CPU kernel is unavailable ({_state['reason']}); training "
                          f"uses XLA's code (slower; set {DISABLE_ENV}=1 to silence this)", RuntimeWarning,
                          stacklevel=2)
        return _state["ok"]


def prepare_in_background() -> None:
    """Build and load the kernel in a daemon thread (the compiler runs as subprocesses), so that a job's
    work that does not need it overlaps the build; a later ``available()`` waits for it."""
    if "ok" not in _state and enabled():
        threading.Thread(target=available, name="collapse_mc-native-build", daemon=True).start()


def status() -> dict:
    """``{"enabled", "available", "reason", "path"}`` (builds the kernel if not yet tried)."""
    ok = available()
    return {"enabled": enabled(), "available": ok, "reason": _state.get("reason"), "path": _state.get("path")}


@contextmanager
def override(use: bool):
    """Within the block, programs traced use the kernel only if ``use`` (and it is available); for comparing
    the kernel with XLA's code in one process. Compiled programs cached before are not affected."""
    token = _override.set(bool(use))
    try:
        yield
    finally:
        _override.reset(token)


FUSED_ENV = "COLLAPSE_MC_NO_FUSED"
_fused_override: ContextVar[bool | None] = ContextVar("collapse_mc_fused_override", default=None)


def fused_enabled() -> bool:
    """Whether programs traced now run whole training steps in the kernel where they can
    (``train_steps``); off under ``override_fused(False)`` or with ``COLLAPSE_MC_NO_FUSED=1`` (the kernel's
    stack and Adam inside XLA's step, as before). For comparing the two."""
    use = _fused_override.get()
    if use is not None:
        return use
    return os.environ.get(FUSED_ENV, "") in ("", "0")


@contextmanager
def override_fused(use: bool):
    """Within the block, programs traced run whole steps in the kernel only if ``use`` (see ``fused_enabled``)."""
    token = _fused_override.set(bool(use))
    try:
        yield
    finally:
        _fused_override.reset(token)


def usable(width: int, activation: str, dtype) -> bool:
    """Whether a hidden stack of this width, activation and dtype runs in the kernel in a CPU program."""
    import jax
    import jax.numpy as jnp
    if _override.get() is False:
        return False
    return (1 <= width <= MAX_WIDTH and activation in ("relu", "leaky_relu") and jnp.dtype(dtype) == jnp.float32
            and jax.default_backend() == "cpu" and available())


def _flags(activation: str, negative_slope: float, residual: bool) -> dict:
    import numpy as np
    leaky = activation == "leaky_relu"
    return {"slope": np.float32(negative_slope if leaky else 0.0), "leaky": np.int32(leaky),
            "residual": np.int32(bool(residual))}


def saves_pre(activation: str, residual: bool) -> bool:
    """Whether the forward pass saves pre-activations (leaky ReLU or residual; a ReLU layer's derivative is
    read off its output)."""
    return activation == "leaky_relu" or bool(residual)


def stack_forward(h, stacked, n, activation: str, negative_slope: float, residual: bool):
    """``(out (W, P), inputs (L, W, P), pre (L, W, P) or (0,))`` of the stack: ``h (W, P)``, ``stacked
    (L, W + 1, W)``, ``n`` (int32 scalar: active layers). vmap adds leading network axes."""
    import jax
    import jax.numpy as jnp
    L = stacked.shape[0]
    sd = jax.ShapeDtypeStruct
    pre_shape = (L,) + h.shape if saves_pre(activation, residual) else (0,)
    call = jax.ffi.ffi_call(FORWARD, (sd(h.shape, h.dtype), sd((L,) + h.shape, h.dtype), sd(pre_shape, h.dtype)),
                            vmap_method="broadcast_all")
    return call(h, stacked, jnp.asarray(n, jnp.int32), **_flags(activation, negative_slope, residual))


def stack_backward(g, out, inputs, pre, stacked, n, activation: str, negative_slope: float, residual: bool):
    """``(grad_h (W, P), grad_stacked (L, W + 1, W))`` for the cotangent ``g (W, P)`` of the stack's output,
    from ``stack_forward``'s ``out, inputs, pre``; layers >= ``n`` get zero gradient."""
    import jax
    import jax.numpy as jnp
    sd = jax.ShapeDtypeStruct
    call = jax.ffi.ffi_call(BACKWARD, (sd(g.shape, g.dtype), sd(stacked.shape, stacked.dtype),
                                       sd((2,) + g.shape, g.dtype)), vmap_method="broadcast_all")
    grad_h, grad_stacked, _ = call(g, out, inputs, pre, stacked, jnp.asarray(n, jnp.int32),
                                   **_flags(activation, negative_slope, residual))
    return grad_h, grad_stacked


def stack_report(h, stacked, n, activation: str, negative_slope: float, residual: bool):
    """``(out (W, P), dead (L,) int32, constant (L,) bool)``: the stack's output and, per stacked layer,
    ``observe.layer_report`` of its pre-activation and output over the P points (layers >= ``n``: (0, False)).
    Nothing per layer is kept, so P may be large (the death check on the whole training set)."""
    import jax
    import jax.numpy as jnp
    L = stacked.shape[0]
    sd = jax.ShapeDtypeStruct
    call = jax.ffi.ffi_call(REPORT, (sd(h.shape, h.dtype), sd((L,), jnp.int32), sd((L,), jnp.int32),
                                     sd((3,) + h.shape, h.dtype)), vmap_method="broadcast_all")
    out, dead, constant, _ = call(h, stacked, jnp.asarray(n, jnp.int32),
                                  **_flags(activation, negative_slope, residual))
    return out, dead, constant.astype(bool)


def stack_any_dead(h, stacked, n, activation: str, negative_slope: float, residual: bool,
                   prefix: int = DEAD_CHECK_PREFIX):
    """Whether some active stacked layer is dead on all P points (``stack_report``'s ``dead == W`` and
    ``constant``), bool scalar. Exactly ``stack_report``'s answer, cheaper: a layer dead on all points is dead on
    the first ``prefix``, so the whole report runs only where some layer is dead on those."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    L = stacked.shape[0]
    W, P = h.shape
    sd = jax.ShapeDtypeStruct
    call = jax.ffi.ffi_call(ANY_DEAD, (sd((), jnp.int32), sd((5 * W * P + 2 * L,), h.dtype)),
                            vmap_method="broadcast_all")
    dead, _ = call(h, stacked, jnp.asarray(n, jnp.int32), prefix=np.int64(prefix),
                   **_flags(activation, negative_slope, residual))
    return dead.astype(bool)


def adam_update(param, grad, mu, nu, rows, hyper):
    """Adam's update of one parameter leaf (optax.adam's arithmetic): ``(param', mu', nu')``. ``param, grad,
    mu, nu`` have one shape; ``rows`` (int32 scalar) is how many entries of the leading axis to update (the
    rest have zero gradient and moments, which Adam leaves unchanged); ``hyper (7,)`` float32: lr, b1, b2,
    eps, eps_root, 1 - b1^t, 1 - b2^t for this update's count t. vmap adds leading network axes."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    if param.size == 0:
        return param, mu, nu
    if param.ndim == 0:
        p, m, v = adam_update(param[None], grad[None], mu[None], nu[None], 1, hyper)
        return p[0], m[0], v[0]
    sd = jax.ShapeDtypeStruct(param.shape, param.dtype)
    call = jax.ffi.ffi_call(ADAM, (sd, sd, sd), vmap_method="broadcast_all", input_output_aliases={0: 0, 2: 1, 3: 2})
    return call(param, grad, mu, nu, jnp.asarray(rows, jnp.int32), jnp.asarray(hyper, jnp.float32),
                rank=np.int32(param.ndim))


def train_steps(leaves, xt, yt, key_data, step0, batch_size: int | None, hyper, n, valid, finite,
                activation: str, negative_slope: float, residual: bool):
    """Whole training steps of one ReLU network in one call (``hidden_stack.cc``'s ``network_train``): the
    mean squared error on minibatches and plain Adam, the arithmetic of ``forward.loss_and_grad_t`` then
    ``adam_update``. ``leaves``: ``(p_in (d_in + 1, W), p_stacked (L, W + 1, W), p_out (W + 1, d_out))`` then
    their Adam ``mu`` and ``nu`` in the same order (nine arrays); ``xt (d_in, N)``, ``yt (d_out, N)``: the
    training set; ``key_data (2,)`` uint32: the batch stream's threefry key, whose step t draws
    ``jax.random.randint(fold_in(key, t), (batch_size,), 0, N)`` (``minibatch_indices``) for steps
    ``t = step0, step0 + 1, ...`` (``batch_size`` None: every step on the whole set, in order, nothing drawn);
    ``hyper (S, 7)``: ``adam_update``'s per step; ``n``: active stacked layers;
    ``valid``: steps to run (the first ``valid`` of S); ``finite`` (bool): whether every loss so far was finite.
    Returns ``(nine leaves, finite)`` after the steps. vmap adds network axes."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    leaves = tuple(leaves)
    shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves) + (
        jax.ShapeDtypeStruct(jnp.shape(finite), jnp.int32),)
    call = jax.ffi.ffi_call(TRAIN, shapes, vmap_method="broadcast_all",
                            input_output_aliases={**{k: k for k in range(9)}, 15: 9})
    out = call(*leaves, xt, yt, jnp.asarray(key_data, jnp.uint32), jnp.asarray(hyper, jnp.float32),
               jnp.asarray(n, jnp.int32), jnp.asarray(valid, jnp.int32), jnp.asarray(finite, jnp.int32),
               jnp.asarray(step0, jnp.int32), batch_size=np.int64(batch_size or xt.shape[-1]),
               full_batch=np.int32(batch_size is None),
               **_flags(activation, negative_slope, residual))
    return out[:9], out[9].astype(bool)


def minibatch_indices(key_data, step0, steps: int, batch_size: int, points: int):
    """``(steps, batch_size)`` int32: the minibatch indices ``train_steps`` draws for steps ``step0 ..`` from a
    threefry key's data ``(2,)`` uint32 (equal to ``jax.random.randint(fold_in(key, t), (batch_size,), 0,
    points)`` with ``jax_threefry_partitionable``). vmap adds key axes."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    call = jax.ffi.ffi_call(MINIBATCH, jax.ShapeDtypeStruct((steps, batch_size), jnp.int32),
                            vmap_method="broadcast_all")
    return call(jnp.asarray(key_data, jnp.uint32), jnp.asarray(step0, jnp.int32), steps=np.int64(steps),
                batch_size=np.int64(batch_size), points=np.int64(points))


__all__ = ["available", "prepare_in_background", "status", "usable", "override", "stack_forward", "stack_backward", "stack_report", "stack_any_dead", "adam_update", "train_steps", "minibatch_indices", "fused_enabled", "override_fused", "saves_pre", "enabled",
           "cache_dir", "MAX_WIDTH", "DISABLE_ENV", "DIR_ENV"]
