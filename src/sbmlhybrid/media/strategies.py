"""Transfer strategies: names, the pretrained snapshot and what each strategy trains.

Hand-written on torch (see ``nets``). Layer 0 is the input layer, layer L-1 the
output layer ("head"); "depth" means a number of layers.

    "head"      stage 1 only: the head is refitted (linear probe), the body frozen.
    "lp-ft"     LP-FT (Kumar et al., ICLR 2022): stage 1 linear probe, then stage 2
                fine-tunes the *whole* network at the smaller ``lr_finetune``.
    "staged"    output-side-first staged unfreezing: stage 1 linear probe, then stage 2
                fine-tunes the head and the k hidden layers next to it at ``lr_finetune``;
                input-side layers stay frozen. k is chosen by K-fold CV on the target
                among candidate depths (``depth_candidates``).
    "full"      every layer fine-tuned from the pretrained weights at ``lr``.
    "surgical"  the first k layers frozen, the rest fine-tuned at ``lr``; k chosen by
                K-fold CV on the target (Lee et al., ICLR 2023).
    "scratch"   random initialisation, target rows only (source ignored).

Stage 1 is solved in closed form (ridge, ``lp_solver="ridge"``, a converged linear
probe as in Kumar et al.); ``lp_solver="adam"`` trains it with Adam at ``lr_head``.
Components new in the target get zero-initialised input rows that are trained
together with the head right after stage 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.media.nets import EnsembleMLP, TrainResult, fit_linear_head, train_ensemble

STRATEGIES = ("head", "lp-ft", "staged", "full", "surgical", "scratch")
_ALIASES = {
    "head-only": "head", "lpft": "lp-ft", "lp_ft": "lp-ft", "full-finetune": "full",
    "full_finetune": "full", "from-scratch": "scratch", "from_scratch": "scratch",
    "staged-unfreeze": "staged", "staged_unfreeze": "staged",
}
# strategies whose stage 1 is a linear probe of the pretrained body
PROBED = ("head", "lp-ft", "staged")


def canonical_strategy(name: str) -> str:
    """Normalise a strategy name (aliases such as "head-only", "lpft") or raise InputError."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in STRATEGIES:
        raise InputError(Issue(f"unknown strategy {name!r}; choose one of {STRATEGIES}"))
    return key


@dataclass
class SourceSnapshot:
    """Pretrained state: columns, source scaling, standardisation and weights."""

    columns: list[str]
    x_min: np.ndarray  # (d,) source minimum per column, user units
    x_max: np.ndarray  # (d,)
    x_mean: np.ndarray  # (d,) source mean: fill value for components missing in the target
    y_mean: float
    y_std: float
    weights: list[np.ndarray]  # per layer (E, d_in, d_out), float32
    biases: list[np.ndarray]  # per layer (E, 1, d_out), float32
    activation: str

    def build(self, n_members: int, n_new: int) -> EnsembleMLP:
        """Copy the weights into a net of ``n_members`` members (cycled) with
        ``n_new`` extra input rows initialised to zero."""
        e_src = self.weights[0].shape[0]
        idx = np.arange(n_members) % e_src
        width = self.weights[0].shape[2]
        net = EnsembleMLP(len(self.columns) + n_new, width, len(self.weights), n_members,
                          self.activation)
        with torch.no_grad():
            for i, (w, b) in enumerate(zip(self.weights, self.biases)):
                wt = torch.from_numpy(w[idx]).float()
                if i == 0 and n_new:
                    wt = torch.cat([wt, torch.zeros(n_members, n_new, wt.shape[2])], dim=1)
                net.weights[i].copy_(wt)
                net.biases[i].copy_(torch.from_numpy(b[idx]).float())
        return net


@dataclass(frozen=True)
class StageSettings:
    """Optimiser settings shared by every stage (see TransferMLPRegressor for meanings)."""

    lr: float
    lr_head: float
    lr_finetune: float
    lp_solver: str
    head_alpha: float
    max_epochs: int
    patience: int
    weight_decay: float
    batch_size: int | None


def depth_candidates(strategy: str, n_layers: int,
                     requested: int | Sequence[int] | None) -> list[int]:
    """Candidate depths of "staged" (unfrozen hidden layers) or "surgical" (frozen layers).

    ``requested`` is an int, a sequence of ints or None/empty for the defaults (staged
    1, 2, (L-1)//2, L-2 clipped to [1, L-1]; surgical 0, L/3, 2L/3, L-1). Requested
    depths are clipped to [0, L-1]. Other strategies: [0].
    """
    if strategy not in ("staged", "surgical"):
        return [0]
    default = requested is None or np.size(requested) == 0
    if not default:
        cands = np.atleast_1d(np.asarray(requested, dtype=int)).tolist()
    elif strategy == "staged":
        cands = [1, 2, (n_layers - 1) // 2, n_layers - 2]
    else:
        cands = [0, n_layers // 3, 2 * n_layers // 3, n_layers - 1]
    lo = 1 if strategy == "staged" and default else 0
    return sorted({min(max(int(k), lo), n_layers - 1) for k in cands})


def trainable_layers(strategy: str, n_layers: int, depth: int) -> list[bool]:
    """Per-layer flags of the strategy's main (stage-2) training.

    head: head only; lp-ft and scratch: all; staged: head + ``depth`` hidden layers next
    to it; full/surgical: every layer from index ``depth`` on.
    """
    if strategy == "head":
        return [i == n_layers - 1 for i in range(n_layers)]
    if strategy in ("lp-ft", "scratch"):
        return [True] * n_layers
    k = min(max(int(depth), 0), n_layers - 1)
    if strategy == "staged":
        return [i >= n_layers - 1 - k for i in range(n_layers)]
    return [i >= k for i in range(n_layers)]


def train_strategy(
    strategy: str, net: EnsembleMLP, x: torch.Tensor, y: torch.Tensor, train_mask: torch.Tensor,
    val_mask: torch.Tensor, settings: StageSettings, depth: int = 0,
    new_rows: torch.Tensor | None = None, generator: torch.Generator | None = None,
) -> dict[str, TrainResult]:
    """Train ``net`` in place with ``strategy``; returns {stage name: TrainResult}.

    Args:
        strategy: Canonical strategy name. net: Scratch net ("scratch") or the pretrained
            net built by ``SourceSnapshot.build`` (every other strategy).
        x: Scaled inputs (n, d). y: Standardised targets (n,).
        train_mask, val_mask: (E, n) per-member 0/1 row masks (see ``nets.train_ensemble``).
        settings: Learning rates, solver and training controls.
        depth: Unfrozen hidden layers (staged) or frozen input-side layers (full/surgical).
        new_rows: (d,) 0/1 mask of input rows of target-only components; they stay
            trainable while the input layer is otherwise frozen.
        generator: torch RNG for the mini-batch order.
    """
    s = settings
    n_layers = net.n_layers

    def train(flags: list[bool], lr: float, rows=new_rows) -> TrainResult:
        return train_ensemble(net, x, y, train_mask, val_mask, flags, lr, s.max_epochs,
                              s.patience, s.weight_decay, s.batch_size, rows, generator)

    if strategy == "scratch":
        return {"scratch": train([True] * n_layers, s.lr, None)}
    hist: dict[str, TrainResult] = {}
    if strategy not in PROBED:
        hist[strategy] = train(trainable_layers(strategy, n_layers, depth), s.lr)
        return hist
    head_only = trainable_layers("head", n_layers, 0)
    if s.lp_solver == "ridge":
        fit_linear_head(net, x, y, train_mask, s.head_alpha)
    else:
        hist["stage1"] = train(head_only, s.lr_head, None)
    if new_rows is not None and bool(new_rows.any()):
        # new components' zero rows learn with the head before the body may move
        hist["new_inputs"] = train(head_only, s.lr_finetune)
    if strategy != "head":
        hist["stage2"] = train(trainable_layers(strategy, n_layers, depth), s.lr_finetune)
    return hist
