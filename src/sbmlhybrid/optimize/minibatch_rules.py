"""Parameter-update rules and learning-rate schedules of the mini-batch optimizers.

Hand-written (pyPESTO and fides have no mini-batch optimizers); the rules and schedules follow
parPE's `minibatchOptimization.h` (Stapor et al., Nat. Commun. 2022), which this module
re-implements in NumPy:

* ``sgd``: plain stochastic gradient descent, step = -lr * g.
* ``vanilla``: normalized-step SGD (parPE's "vanilla"): step = -lr * g / ||g||, so the learning
  rate is the step length on the (PEtab-scale) parameter vector.
* ``momentum``: heavy ball, v = mu * v - lr * g, step = v (mu = 0.9).
* ``rmsprop``: s = rho * s + (1 - rho) * g**2, step = -lr * g / (sqrt(s) + eps), rho = 0.9.
* ``adam``: the paper's balanced Adam, beta1 = beta2 = 0.9, with bias correction.
* ``adam-classic``: Kingma & Ba's Adam, beta1 = 0.9, beta2 = 0.999.
* ``adadelta``: Zeiler's Adadelta (rho = 0.95, eps = 1e-6), step scaled by lr (default 1).

Learning-rate schedules run per epoch from a start to an end rate: ``constant``, ``linear``,
``inverse-linear`` (1/lr linear in the epoch) and ``logarithmic`` (log lr linear). parPE
divides by (epochs - 1); a one-epoch run uses the start rate here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sbmlhybrid.errors import InputError

SCHEDULES = ("constant", "linear", "inverse-linear", "logarithmic")
METHODS = ("sgd", "vanilla", "momentum", "rmsprop", "adam", "adam-classic", "adadelta")


def learning_rate(schedule: str, start: float, end: float, epoch: int, n_epochs: int) -> float:
    """Learning rate of epoch `epoch` (0-based) of `n_epochs`, going from `start` to `end`.

    Args:
        schedule: One of `SCHEDULES`.
        start: Rate of the first epoch (> 0).
        end: Rate of the last epoch (> 0; ignored by "constant").
        epoch: 0-based epoch index.
        n_epochs: Number of epochs (>= 1). With one epoch the rate is `start` (parPE divides
            by zero there).
    """
    if schedule not in SCHEDULES:
        raise InputError(f"unknown learning-rate schedule {schedule!r}; choose from {SCHEDULES}")
    if not (start > 0 and end > 0):
        raise InputError("learning rates must be positive")
    if schedule == "constant" or n_epochs <= 1:
        return float(start)
    frac = min(max(epoch, 0), n_epochs - 1) / (n_epochs - 1)
    if schedule == "linear":
        return float(start + (end - start) * frac)
    if schedule == "inverse-linear":
        return float(1.0 / (1.0 / start + (1.0 / end - 1.0 / start) * frac))
    return float(math.exp(math.log(start) + (math.log(end) - math.log(start)) * frac))


@dataclass
class UpdateRule:
    """A stateful parameter-update rule: `step(g, lr)` returns the step to add to x.

    Attributes:
        method: One of `METHODS`.
        decay: Decay of the running averages (momentum mu, RMSProp/Adadelta rho).
        beta1: Adam's first-moment decay.
        beta2: Adam's second-moment decay.
        eps: Regularization of divisions by running RMS values.
    """

    method: str
    decay: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.9
    eps: float = 1e-8
    _state: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _t: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown mini-batch method {self.method!r}; choose from {METHODS}")

    @classmethod
    def create(cls, method: str) -> UpdateRule:
        """The rule with the defaults of `method` (see the module docstring)."""
        if method == "adam-classic":
            return cls(method, beta1=0.9, beta2=0.999)
        if method == "adadelta":
            return cls(method, decay=0.95, eps=1e-6)
        return cls(method)

    def reset(self) -> None:
        """Forget all running averages (used by the rescue after repeated failures)."""
        self._state.clear()
        self._t = 0

    def _avg(self, key: str, value: np.ndarray, rho: float) -> np.ndarray:
        old = self._state.get(key)
        new = (1.0 - rho) * value if old is None else rho * old + (1.0 - rho) * value
        self._state[key] = new
        return new

    def step(self, g: np.ndarray, lr: float) -> np.ndarray:
        """Update the state with gradient `g` and return the step (same shape as `g`)."""
        g = np.asarray(g, dtype=float)
        self._t += 1
        m = self.method
        if m == "sgd":
            return -lr * g
        if m == "vanilla":
            norm = float(np.linalg.norm(g))
            return -lr * g / norm if norm > 0 else np.zeros_like(g)
        if m == "momentum":
            v = self.decay * self._state.get("v", np.zeros_like(g)) - lr * g
            self._state["v"] = v
            return v.copy()
        if m == "rmsprop":
            s = self._avg("s", g * g, self.decay)
            return -lr * g / (np.sqrt(s) + self.eps)
        if m in ("adam", "adam-classic"):
            mom = self._avg("m", g, self.beta1)
            var = self._avg("v", g * g, self.beta2)
            m_hat = mom / (1.0 - self.beta1 ** self._t)
            v_hat = var / (1.0 - self.beta2 ** self._t)
            return -lr * m_hat / (np.sqrt(v_hat) + self.eps)
        # adadelta
        eg2 = self._avg("eg2", g * g, self.decay)
        edx2 = self._state.get("edx2", np.zeros_like(g))
        dx = -np.sqrt(edx2 + self.eps) / np.sqrt(eg2 + self.eps) * g
        self._state["edx2"] = self.decay * edx2 + (1.0 - self.decay) * dx * dx
        return lr * dx


def default_learning_rates(method: str) -> tuple[float, float, str]:
    """(start, end, schedule) used when none is given.

    Scale-free rules (vanilla, RMSProp, Adam) start at 0.1 and decay logarithmically to 1e-3
    (steps in PEtab-scale units, i.e. decades for log10 parameters), as in the paper's
    best-performing settings; plain SGD and momentum depend on the gradient's magnitude and
    start small; Adadelta adapts its own scale (lr 1).
    """
    if method in ("sgd", "momentum"):
        return 1e-3, 1e-5, "logarithmic"
    if method == "adadelta":
        return 1.0, 1.0, "constant"
    return 0.1, 1e-3, "logarithmic"


def parabolic_minimum(f0: float, d0: float, f1: float, lo: float = 0.1, hi: float = 2.0
                      ) -> float:
    """Step factor minimizing the parabola through f(0)=f0, f'(0)=d0, f(1)=f1, clipped.

    Returns `lo` when the parabola opens downwards and the value rose, `hi` when it opens
    downwards and the value fell (extrapolate), else the vertex clipped to [lo, hi].
    """
    curv = f1 - f0 - d0
    if not np.isfinite(curv) or curv <= 0:
        return hi if f1 < f0 else lo
    return float(np.clip(-d0 / (2.0 * curv), lo, hi))
