"""Vectorised deep-ensemble MLP and its masked, early-stopped training loop.

Hand-written on top of torch (reused: ``torch.nn.Parameter``, ``torch.optim.Adam``,
autograd). The E members of a deep ensemble are stored as stacked weight
tensors of shape (E, d_in, d_out) and trained simultaneously with one batched
matmul per layer, so an ensemble of 5 costs about as much as one network.
Every member has its own 0/1 training and validation masks over the rows,
which gives (a) per-member random validation splits for early stopping and
(b) K-fold cross-validation in a single run (member k = fold k).

Layer indexing: layer 0 is the input layer, layer ``n_layers - 1`` is the
output layer ("head"). Freezing a layer means its weight and bias receive no
gradient and no weight decay, so their values stay bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

_ACTIVATIONS = {"silu": torch.nn.functional.silu, "relu": torch.relu, "tanh": torch.tanh}
_INPLACE = {"silu": lambda h: torch.nn.functional.silu(h, inplace=True), "relu": torch.relu_}
ACTIVATIONS = tuple(_ACTIVATIONS)  # names accepted by EnsembleMLP


class EnsembleMLP(nn.Module):
    """E independent MLPs with stacked parameters.

    Args:
        n_in: Number of input features d.
        width: Hidden width w.
        n_layers: Number of linear layers including the output layer (>= 2).
        n_members: Ensemble size E.
        activation: "silu", "relu" or "tanh".
        generator: torch RNG for the initialisation (He-normal hidden, 1/sqrt(w) head).
    """

    def __init__(
        self,
        n_in: int,
        width: int,
        n_layers: int,
        n_members: int,
        activation: str = "silu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if n_layers < 2:
            raise ValueError("n_layers must be >= 2 (one hidden layer and the head)")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}")
        self.n_in, self.width, self.n_layers = n_in, width, n_layers
        self.n_members, self.activation = n_members, activation
        dims = [n_in] + [width] * (n_layers - 1) + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            gain = 1.0 if i == n_layers - 1 else 2.0
            w = torch.randn(n_members, d_in, d_out, generator=generator) * math.sqrt(gain / d_in)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(n_members, 1, d_out)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, shape (E, n, w), for inputs x of shape (n, d)."""
        act = _ACTIVATIONS[self.activation]
        h = x
        for w, b in zip(list(self.weights)[:-1], list(self.biases)[:-1]):
            h = act(torch.matmul(h, w) + b)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions of every member, shape (E, n), for x of shape (n, d)."""
        h = self.features(x)
        return (torch.matmul(h, self.weights[-1]) + self.biases[-1]).squeeze(-1)

    @torch.no_grad()
    def predict_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Inference-only forward, (n, d) -> (E, n): fused bias (baddbmm) and in-place
        activations; numerically the same as ``forward``."""
        act = _ACTIVATIONS[self.activation]
        ws, bs = list(self.weights), list(self.biases)
        h = torch.baddbmm(bs[0], x.expand(ws[0].shape[0], *x.shape), ws[0])
        for w, b in zip(ws[1:], bs[1:]):
            h = act(h) if self.activation == "tanh" else _INPLACE[self.activation](h)
            h = torch.baddbmm(b, h, w)
        return h.squeeze(-1)

    def layer_params(self, i: int) -> tuple[nn.Parameter, nn.Parameter]:
        """(weight, bias) of layer i; weight (E, d_in, d_out), bias (E, 1, d_out)."""
        return self.weights[i], self.biases[i]


@dataclass
class TrainResult:
    """Learning curve and stopping information of one training run.

    Attributes:
        train_loss: Mean masked training MSE per epoch (standardised units).
        val_loss: Mean masked validation MSE per epoch (NaN where no member validates).
        best_epoch: (E,) epoch whose weights were kept for each member.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: np.ndarray | None = None


def _masked_mse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-member masked MSE: pred (E, n), y (n,), mask (E, n) -> (E,)."""
    denom = mask.sum(dim=1).clamp(min=1.0)
    return ((pred - y) ** 2 * mask).sum(dim=1) / denom


def _trainable_params(net: EnsembleMLP, trainable: list[bool],
                      input_row_mask: torch.Tensor | None) -> tuple[list[nn.Parameter], list]:
    """Set requires_grad per layer flag; returns (parameters to optimise, gradient hooks).

    A frozen input layer with a non-empty ``input_row_mask`` keeps its weight
    trainable, with a hook that zeroes the gradient of the other rows.
    """
    params: list[nn.Parameter] = []
    hooks = []
    for i, flag in enumerate(trainable):
        w, b = net.layer_params(i)
        if flag:
            w.requires_grad_(True)
            b.requires_grad_(True)
            params += [w, b]
        elif i == 0 and input_row_mask is not None and bool(input_row_mask.any()):
            w.requires_grad_(True)
            b.requires_grad_(False)
            row_mask = input_row_mask.to(w.dtype).view(1, -1, 1)
            hooks.append(w.register_hook(lambda g, m=row_mask: g * m))
            params.append(w)
        else:
            w.requires_grad_(False)
            b.requires_grad_(False)
    return params, hooks


def _epoch(net: EnsembleMLP, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
           train_mask: torch.Tensor, bs: int, generator: torch.Generator | None,
           decayed: list[nn.Parameter], decay: float) -> tuple[float, torch.Tensor]:
    """One epoch of (mini-)batch Adam steps; returns (mean training MSE, predictions (E, n)
    of every row for monitoring). ``decay`` multiplies the ``decayed`` weights per step."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if bs < n else None
    total = 0.0
    for start in range(0, n, bs):
        idx = order[start : start + bs] if order is not None else slice(None)
        pred = net(x[idx])
        loss_e = _masked_mse(pred, y[idx], train_mask[:, idx])
        loss = loss_e.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if order is None:  # full batch: monitor the pre-step predictions, no extra pass
            full_pred = pred.detach()
        opt.step()
        if decayed:
            with torch.no_grad():
                torch._foreach_mul_(decayed, decay)
        total += float(loss_e.detach().mean())
    if order is not None:
        with torch.no_grad():
            full_pred = net(x)
    return total / math.ceil(n / bs), full_pred


def train_ensemble(
    net: EnsembleMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    train_mask: torch.Tensor,
    val_mask: torch.Tensor,
    trainable: list[bool],
    lr: float,
    max_epochs: int,
    patience: int,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    input_row_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> TrainResult:
    """Train the members of ``net`` in place with Adam and per-member early stopping.

    Args:
        net: The ensemble; its parameters are modified in place.
        x: Inputs (n, d), already scaled. y: Standardised targets (n,).
        train_mask: (E, n) 1 where row i is in member e's training set.
        val_mask: (E, n) 1 where row i is in member e's validation set. A member
            without validation rows is monitored on its training loss.
        trainable: One flag per layer (len n_layers); False freezes the layer.
        lr: Adam learning rate. max_epochs: Epoch limit.
        patience: Stop when no member improved for this many epochs.
        weight_decay: Decoupled weight decay (w <- w (1 - lr wd) after each step) on the
            weights of trainable layers only.
        batch_size: Mini-batch size; None or >= n means full batch.
        input_row_mask: Optional (d,) 0/1 mask of the input-layer rows that may
            change while layer 0 is frozen (new components get trainable rows).
        generator: torch RNG for the mini-batch order.

    Returns:
        TrainResult with the learning curve; the kept weights are those of each
        member's best monitored epoch.
    """
    n = x.shape[0]
    params, hooks = _trainable_params(net, trainable, input_row_mask)
    result = TrainResult()
    if not params or max_epochs <= 0:
        result.best_epoch = np.zeros(net.n_members, dtype=int)
        return result
    # decoupled (AdamW-style) decay on trainable weights only; a partly frozen
    # input layer is not decayed, so frozen rows stay bit-identical
    decayed = [p for i, p in enumerate(net.weights) if trainable[i]] if weight_decay > 0 else []
    opt = torch.optim.Adam(params, lr=lr, fused=True)
    has_val = val_mask.sum(dim=1) > 0
    monitor_mask = torch.where(has_val[:, None], val_mask, train_mask)
    best = torch.full((net.n_members,), float("inf"))
    best_epoch = np.zeros(net.n_members, dtype=int)
    best_state = [p.detach().clone() for p in params]
    stale = 0
    bs = n if batch_size is None or batch_size >= n else batch_size
    for epoch in range(max_epochs):
        train_loss, full_pred = _epoch(net, opt, x, y, train_mask, bs, generator, decayed,
                                       1.0 - lr * weight_decay)
        with torch.no_grad():
            mon = _masked_mse(full_pred, y, monitor_mask)
            val = _masked_mse(full_pred, y, val_mask)
        result.train_loss.append(train_loss)
        result.val_loss.append(float(val[has_val].mean()) if bool(has_val.any()) else float("nan"))
        improved = mon < best - 1e-7
        if bool(improved.any()):
            best = torch.where(improved, mon, best)
            best_epoch[improved.numpy()] = epoch
            # full batch: the monitor saw the pre-step weights; keeping the post-step
            # weights is one Adam step off, which is negligible and saves a pass
            for p, s in zip(params, best_state):
                s[improved] = p.detach()[improved]
            stale = 0
        else:
            stale += 1
            if stale >= patience:
                break
    _restore(net, params, best_state, hooks)
    result.best_epoch = best_epoch
    return result


def _restore(net: EnsembleMLP, params: list[nn.Parameter], state: list[torch.Tensor],
             hooks: list) -> None:
    """Copy the kept ``state`` back into ``params``, drop the hooks, freeze every layer."""
    with torch.no_grad():
        for p, s in zip(params, state):
            p.copy_(s)
    for h in hooks:
        h.remove()
    for p in net.parameters():
        p.requires_grad_(False)


def fit_linear_head(
    net: EnsembleMLP, x: torch.Tensor, y: torch.Tensor, train_mask: torch.Tensor, alpha: float
) -> None:
    """Linear probe: solve the output layer in closed form (ridge) per member.

    The body is left untouched; for member e the head solves
    min ||m_e * (H_e w + b - y)||^2 + alpha ||w||^2 with H_e = features (n, w).

    Args:
        net: Ensemble whose head is overwritten in place.
        x: Scaled inputs (n, d).
        y: Standardised targets (n,).
        train_mask: (E, n) 0/1 rows used by each member.
        alpha: Ridge penalty (the bias is not penalised).
    """
    with torch.no_grad():
        h = net.features(x).double()  # (E, n, w)
        e, n, w = h.shape
        ones = torch.ones(e, n, 1, dtype=h.dtype)
        ha = torch.cat([h, ones], dim=2)  # (E, n, w+1)
        m = train_mask.double().unsqueeze(-1)
        gram = (ha * m).transpose(1, 2) @ ha
        reg = torch.eye(w + 1, dtype=h.dtype) * alpha
        reg[w, w] = 1e-8
        rhs = (ha * m).transpose(1, 2) @ y.double().view(1, n, 1)
        sol = torch.linalg.solve(gram + reg, rhs)  # (E, w+1, 1)
        net.weights[-1].copy_(sol[:, :w, :].float())
        net.biases[-1].copy_(sol[:, w:, :].transpose(1, 2).float())


def member_masks(
    n: int, n_members: int, val_fraction: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-member train/validation split masks, each (E, n) float32.

    Every member holds out round(val_fraction * n) rows (at least 1 when n >= 5,
    none when n < 5: then it is monitored on its training loss).
    """
    n_val = int(round(val_fraction * n)) if n >= 5 else 0
    if n >= 5:
        n_val = max(1, n_val)
    val = np.zeros((n_members, n), dtype=np.float32)
    for e in range(n_members):
        val[e, rng.permutation(n)[:n_val]] = 1.0
    return torch.from_numpy(1.0 - val), torch.from_numpy(val)


def fold_masks(n: int, n_folds: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """K-fold masks (K, n): member k trains on all folds but k and validates on k."""
    k = max(2, min(n_folds, n))
    assign = np.empty(n, dtype=int)
    assign[rng.permutation(n)] = np.arange(n) % k
    val = (assign[None, :] == np.arange(k)[:, None]).astype(np.float32)
    return torch.from_numpy(1.0 - val), torch.from_numpy(val)
