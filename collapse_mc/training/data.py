"""A user's data set: ``Dataset`` (arrays, or an ``.npz`` file), for regression or classification.

With a data set, every trial trains on the same points (the randomness of a trial is its initialization and
its minibatch order), "constant on the domain" means constant over the given inputs, and:

* born dead and the death checks during training test the **training inputs**; classification after
  training tests the **test inputs** (the training set when no test set is given);
* **regression** (float targets ``(N,)`` or ``(N, d_out)``): collapsed = dead, or the trained output's spread
  (max - min over the test inputs) is <= ``collapse_rtol`` times the test targets' population standard
  deviation, per output (as on the uniform domain); ``test_rel_l2`` is the relative L2 error on the test set;
* **classification** (integer labels ``(N,)`` in ``0 .. n_classes - 1``; the network's ``d_out`` =
  ``n_classes`` logits; loss ``softmax_cross_entropy``): collapsed = dead, or the predicted class (argmax of
  the logits) is the same at every test input; ``test_accuracy`` is recorded.

A data set is identified by the SHA-256 of its arrays (dtype, shape and bytes), recorded in every cell's
identity, never by its file name.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from ..config import ConfigError

TASKS = ("regression", "classification")
MAX_DATA_POINTS = 10_000_000
NPZ_KEYS = {"x_train": ("x_train", "x"), "y_train": ("y_train", "y"), "x_test": ("x_test",), "y_test": ("y_test",)}


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Training (and test) points, points first.

    ``x_train (N, d_in)`` float; ``y_train``: ``(N,)`` / ``(N, d_out)`` float (regression) or ``(N,)``
    integer labels (classification, inferred from the dtype unless ``task`` is given); ``x_test``,
    ``y_test``: the same for the test set (default: the training set). ``n_classes``: classification only,
    default ``max(label) + 1``. Equality and hashing go by content (``digest``), so programs compiled for one
    data set are shared by equal copies.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    task: str | None = None
    n_classes: int | None = None
    name: str = "data"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if (self.x_test is None) != (self.y_test is None):
            raise ConfigError("data: give both x_test and y_test, or neither")
        task = self.task
        y = np.asarray(self.y_train)
        if task is None:
            task = "classification" if y.dtype.kind in "iu" else "regression"
        if task not in TASKS:
            raise ConfigError(f"data: task must be regression or classification, got {task!r}")
        set_("task", task)
        arrays = {}
        for part, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x is None:
                continue
            x, y = np.asarray(x), np.asarray(y)
            if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1 or x.dtype.kind not in "fiu":
                raise ConfigError(f"data: x_{part} must be a numeric array (points, features), got shape {x.shape} "
                                  f"dtype {x.dtype}")
            if x.shape[0] > MAX_DATA_POINTS:
                raise ConfigError(f"data: x_{part} has {x.shape[0]:,} points (limit {MAX_DATA_POINTS:,})")
            x = x.astype(np.float32)
            if not np.all(np.isfinite(x)):
                raise ConfigError(f"data: x_{part} has non-finite values")
            if y.shape[:1] != x.shape[:1]:
                raise ConfigError(f"data: y_{part} has {y.shape[:1]} points but x_{part} has {x.shape[0]}")
            if task == "classification":
                if y.ndim != 1 or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
                    raise ConfigError(f"data: classification labels y_{part} must be non-negative integers (points,)")
                y = y.astype(np.int32)
            else:
                if y.ndim not in (1, 2) or y.dtype.kind not in "fiu":
                    raise ConfigError(f"data: regression targets y_{part} must be numbers (points,) or (points, "
                                      f"outputs)")
                y = y.astype(np.float32).reshape(len(y), -1)
                if not np.all(np.isfinite(y)):
                    raise ConfigError(f"data: y_{part} has non-finite values")
            arrays[part] = (x, y)
        x_tr, y_tr = arrays["train"]
        x_te, y_te = arrays.get("test", (x_tr, y_tr))
        if x_te.shape[1] != x_tr.shape[1] or y_te.shape[1:] != y_tr.shape[1:]:
            raise ConfigError("data: the test set's feature / output dimensions differ from the training set's")
        if task == "classification":
            top = int(max(y_tr.max(), y_te.max())) + 1
            n = top if self.n_classes is None else self.n_classes
            if not (isinstance(n, (int, np.integer)) and 2 <= n >= top):
                raise ConfigError(f"data: n_classes must be an integer >= 2 and > every label (max label {top - 1}),"
                                  f" got {self.n_classes!r}")
            set_("n_classes", int(n))
        elif self.n_classes is not None:
            raise ConfigError("data: n_classes applies to classification only")
        if not (isinstance(self.name, str) and self.name):
            raise ConfigError("data: name must be a non-empty string")
        for k, v in (("x_train", x_tr), ("y_train", y_tr), ("x_test", x_te), ("y_test", y_te)):
            v.setflags(write=False)
            set_(k, v)
        set_("_digest", _digest([x_tr, y_tr, x_te, y_te]))

    # -- identity --------------------------------------------------------------------------------------------
    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the four arrays (dtype, shape, bytes) and so of what is trained on."""
        return self._digest

    def __eq__(self, other):
        return isinstance(other, Dataset) and (self.digest, self.task, self.n_classes) == (
            other.digest, other.task, other.n_classes)

    def __hash__(self):
        return hash((self.digest, self.task, self.n_classes))

    def __repr__(self):
        return (f"Dataset({self.name!r}, {self.task}, train {self.n_train}x{self.d_in}, test {self.n_test}, "
                f"sha256 {self.digest[:12]})")

    @property
    def d_in(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def d_out(self) -> int:
        """Outputs the network needs: ``n_classes`` logits, or the regression targets' dimension."""
        return self.n_classes if self.task == "classification" else int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def identity(self) -> dict:
        """What is recorded in a cell's identity (content, not file name)."""
        d = {"sha256": self.digest, "task": self.task, "n_train": self.n_train, "n_test": self.n_test,
             "d_in": self.d_in, "d_out": self.d_out}
        return d

    def arrays(self) -> dict[str, np.ndarray]:
        """Features-major arrays for the compiled program: ``x_train (d_in, N)``, ``y_train (d_out, N)`` float or
        ``(1, N)`` int32 labels, and the same for the test set."""
        return {"x_train": self.x_train.T, "y_train": self.y_train.reshape(self.n_train, -1).T,
                "x_test": self.x_test.T, "y_test": self.y_test.reshape(self.n_test, -1).T}

    # -- files -----------------------------------------------------------------------------------------------
    @classmethod
    def from_npz(cls, path: str | os.PathLike, task: str | None = None) -> "Dataset":
        """Load ``x_train``, ``y_train`` (or ``x``, ``y``) and optionally ``x_test``, ``y_test`` from an ``.npz``
        file (no pickled objects are loaded)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"data file {str(p)!r} does not exist")
        try:
            with np.load(p, allow_pickle=False) as z:
                found = {k: next((z[n] for n in names if n in z.files), None) for k, names in NPZ_KEYS.items()}
                extra = set(z.files) - {n for names in NPZ_KEYS.values() for n in names}
        except (OSError, ValueError) as e:
            raise ConfigError(f"data file {str(p)!r} is not a readable .npz of numeric arrays ({e})") from None
        if found["x_train"] is None or found["y_train"] is None:
            raise ConfigError(f"data file {str(p)!r} needs arrays x_train and y_train (or x and y)")
        if extra:
            raise ConfigError(f"data file {str(p)!r} has unknown arrays {', '.join(sorted(extra))} (known: x_train, "
                              f"y_train, x_test, y_test)")
        return cls(found["x_train"], found["y_train"], found["x_test"], found["y_test"], task=task, name=p.name)

    def save_npz(self, path: str | os.PathLike) -> None:
        np.savez(path, x_train=self.x_train, y_train=self.y_train if self.task == "classification"
                 else self.y_train, x_test=self.x_test, y_test=self.y_test)
