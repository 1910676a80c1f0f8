"""`FluxAllocation`: the torch module, its linear map, and the functional form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.flux._network import ReducedNetwork, RowSpec, reduce_network
from sbmlhybrid.flux._qp import QPFunction, QPSettings

DTYPE = torch.float64


@dataclass(frozen=True)
class LinearMap:
    """The allocation when no bound is active: ``v = A r + b``, ``residual = R r + c``.

    Shapes: A (n_fluxes, n_measured), b (n_fluxes,), R (n_measured, n_measured),
    c (n_measured,). Units: ``A`` and ``R`` are dimensionless (flux per measured
    rate), ``b`` and ``c`` carry the flux unit. Valid only where ``lb <= A r + b <= ub``.
    """

    A: np.ndarray
    b: np.ndarray
    R: np.ndarray
    c: np.ndarray
    flux_ids: list[str]
    measured_ids: list[str]

    def formulas(self, rate_ids: Sequence[str] | None = None, tol: float = 1e-12) -> dict[str, str]:
        """Infix formulas (SBML L3 math syntax) ``flux_id -> "a1*r1 + ... + b"``.

        Args:
            rate_ids: names of the measured-rate symbols in the target model
                (default: the measured metabolite ids).
            tol: coefficients with ``|a| <= tol`` are dropped.
        """
        names = list(rate_ids) if rate_ids is not None else self.measured_ids
        if len(names) != len(self.measured_ids):
            raise InputError(f"rate_ids needs {len(self.measured_ids)} names, got {len(names)}")
        return {fid: affine_formula(row, names, off, tol)
                for fid, row, off in zip(self.flux_ids, self.A, self.b)}


def affine_formula(coefs: Sequence[float], names: Sequence[str], offset: float,
                   tol: float = 1e-12) -> str:
    """``"a1 * n1 + ... + offset"`` (SBML L3 infix, full precision); ``|a| <= tol`` dropped."""
    terms = [f"{a:.17g} * {nm}" for a, nm in zip(coefs, names) if abs(a) > tol]
    if abs(offset) > tol or not terms:
        terms.append(f"{offset:.17g}")
    return " + ".join(terms).replace("+ -", "- ")


class FluxAllocation(nn.Module):
    """Differentiable, batched weighted least-squares flux allocation.

    For each row ``r`` of a batch of measured net production rates, returns::

        v* = argmin_v ||W (S_m v - r)||^2 + eps ||v||^2
             s.t. S_int v = 0,  lb <= v <= ub

    and the residual ``S_m v* - r`` (the part of ``r`` no admissible flux
    vector explains). ``W = diag(weights)``. Closed form when no bound is
    active; otherwise a batched active-set method (exact KKT solves), with a
    batched interior point method as fallback; every constrained solution is
    checked against the KKT conditions. Exact implicit gradients with respect
    to ``r`` and ``weights`` (the bounds and ``S`` are constants).

    Sign and units: ``r_i`` is the *net production* of measured metabolite i
    (secretion > 0, uptake < 0) in the flux unit (e.g. mmol gDW^-1 h^-1);
    ``weights`` are in inverse flux units (typically 1 / standard deviation).

    Args:
        S: (n_metabolites, n_fluxes) stoichiometric matrix.
        measured_rows: ids or row indices (or a boolean mask) of measured metabolites.
        internal_rows: balanced metabolites; default every row not measured.
            Rows in neither list are free (unmeasured exchange).
        lb, ub: (n_fluxes,) bounds, +-inf allowed; default unbounded.
        weights: (n_measured,) non-negative weights; default 1.
        eps: Tikhonov weight (>= 0; 0 requires every free flux direction to be
            determined by the measurements).
        flux_ids, metabolite_ids: names used in errors and in `linear_map`.
        learn_weights: make ``weights`` an `nn.Parameter`.
        settings: solver tolerances.

    Raises:
        InputError: bad shapes, NaN, ``lb > ub``, bounds no flux vector can
            meet (naming the fluxes whose bounds must move), or a rank problem
            (naming the undetermined fluxes).
    """

    def __init__(
        self,
        S: object,
        measured_rows: RowSpec,
        internal_rows: RowSpec | None = None,
        lb: object = None,
        ub: object = None,
        weights: object = None,
        eps: float = 1e-6,
        *,
        flux_ids: Sequence[str] | None = None,
        metabolite_ids: Sequence[str] | None = None,
        learn_weights: bool = False,
        settings: QPSettings | None = None,
    ) -> None:
        super().__init__()
        net = reduce_network(S, measured_rows, internal_rows, lb, ub, flux_ids, metabolite_ids)
        self.network: ReducedNetwork = net
        self.flux_ids = net.flux_ids
        self.measured_ids = [net.metabolite_ids[i] for i in net.measured]
        self.settings = settings or QPSettings()
        eps = float(eps)
        if not np.isfinite(eps) or eps < 0:
            raise InputError(f"eps must be a finite number >= 0, got {eps}")
        self.eps = eps
        n_m = len(self.measured_ids)
        w = np.ones(n_m) if weights is None else np.asarray(weights, dtype=float)
        if w.ndim == 0:
            w = np.full(n_m, float(w))
        if w.shape != (n_m,):
            raise InputError(f"weights has shape {w.shape}, expected ({n_m},) (one per measured "
                             f"metabolite: {', '.join(self.measured_ids)})")
        bad = [self.measured_ids[i] for i in range(n_m) if not (np.isfinite(w[i]) and w[i] >= 0)]
        if bad:
            raise InputError([Issue(f"weight of measured metabolite {b!r} must be finite and "
                                    ">= 0", entity=b) for b in bad], header="Invalid weights")
        wt = torch.as_tensor(w, dtype=DTYPE)
        if learn_weights:
            self.weights = nn.Parameter(wt)
        else:
            self.register_buffer("weights", wt)
        as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=DTYPE)  # noqa: E731
        self.register_buffer("S_m", as_t(net.S_m))
        self.register_buffer("v0", as_t(net.v0))
        self.register_buffer("T", as_t(net.T))
        self.register_buffer("B", as_t(net.S_m @ net.T))
        self.register_buffer("d", as_t(net.S_m @ net.v0))
        self.register_buffer("G", as_t(net.G))
        self.register_buffer("h", as_t(net.h))
        self._hessian(check=True)  # rank check at build time

    @property
    def n_fluxes(self) -> int:
        return len(self.flux_ids)

    @property
    def n_measured(self) -> int:
        return len(self.measured_ids)

    def _hessian(self, check: bool = False) -> Tensor:
        """Reduced Hessian ``P = B^T W^2 B + eps I`` (k, k); ``check``: InputError if singular."""
        w2 = self.weights**2
        k = self.B.shape[1]
        P = self.B.T @ (w2[:, None] * self.B) + self.eps * torch.eye(k, dtype=DTYPE,
                                                                    device=self.B.device)
        if check and k:
            ev, U = torch.linalg.eigh(P.detach())
            if ev[0] <= 1e-12 * max(float(ev[-1]), 1e-300):
                direction = (self.T @ U[:, 0]).abs()
                names = [self.flux_ids[j] for j in torch.nonzero(
                    direction > 0.1 * direction.max()).flatten().tolist()]
                raise InputError(Issue(
                    "fluxes " + ", ".join(repr(x) for x in names) + " are not determined by "
                    "the measured metabolites " + ", ".join(self.measured_ids)
                    + f" (with these weights: curvature {float(ev[0]):.3g} vs "
                    f"{float(ev[-1]):.3g}); raise eps (now {self.eps:g}) or measure more",
                    entity=names[0] if names else None), header="Rank problem in flux network")
        return P

    def _check_rates(self, r: object) -> Tensor:
        r = torch.as_tensor(r, device=self.v0.device)
        if not (r.is_floating_point() or r.dtype in (torch.int32, torch.int64)):
            raise InputError(f"measured rates must be real numbers, got dtype {r.dtype}")
        r = r.to(DTYPE)
        if r.ndim not in (1, 2) or r.shape[-1] != self.n_measured:
            raise InputError(
                f"measured rates have shape {tuple(r.shape)}, expected (batch, {self.n_measured})"
                f" or ({self.n_measured},), columns: {', '.join(self.measured_ids)}")
        if not bool(torch.isfinite(r).all()):
            bad = torch.nonzero(~torch.isfinite(r.detach().reshape(-1, self.n_measured)))
            raise InputError([Issue(f"rate of {self.measured_ids[j]!r} in batch row {i} is "
                                    f"{float(r.detach().reshape(-1, self.n_measured)[i, j])}",
                                    row=i, entity=self.measured_ids[j])
                              for i, j in bad[:20].tolist()], header="Invalid measured rates")
        return r

    def forward(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """Allocate fluxes.

        Args:
            r: (batch, n_measured) or (n_measured,) measured net production
                rates, columns in the order of ``measured_ids``.

        Returns:
            v: (batch, n_fluxes) optimal fluxes (same leading shape as ``r``).
            residual: (batch, n_measured) ``S_m v - r``.
        """
        r = self._check_rates(r)
        squeeze = r.ndim == 1
        rb = r.reshape(1, -1) if squeeze else r
        if self.B.shape[1] == 0:
            v = self.v0.expand(rb.shape[0], -1)
        else:
            q = ((self.d - rb) * self.weights**2) @ self.B
            try:
                z, _ = QPFunction.apply(self._hessian(), q, self.G, self.h, self.settings)
            except torch.linalg.LinAlgError:
                self._hessian(check=True)  # raises InputError naming the fluxes
                raise
            v = self.v0 + z @ self.T.T
        res = v @ self.S_m.T - rb
        return (v[0], res[0]) if squeeze else (v, res)

    def active_bounds(self, r: Tensor) -> list[list[str]]:
        """For each batch row, the bounds active at the solution, as ``"flux:lower"``."""
        rb = self._check_rates(r).reshape(-1, self.n_measured)
        with torch.no_grad():
            q = ((self.d - rb) * self.weights**2) @ self.B
            _, active = QPFunction.apply(self._hessian(), q, self.G, self.h, self.settings)
        org = self.network.origin
        return [[f"{self.flux_ids[org[i][0]]}:{org[i][1]}" for i in torch.nonzero(row).flatten()]
                for row in active]

    def linear_map(self) -> LinearMap:
        """The fixed affine map of the unconstrained regime (see `LinearMap`)."""
        with torch.no_grad():
            P = self._hessian(check=True)
            w2 = self.weights**2
            K = torch.linalg.solve(P, self.B.T * w2) if self.B.shape[1] else self.B.T
            A = self.T @ K
            b = self.v0 - self.T @ (K @ self.d)
            R = self.S_m @ A - torch.eye(self.n_measured, dtype=DTYPE, device=A.device)
            c = self.S_m @ b
        np_ = lambda t: t.cpu().numpy().copy()  # noqa: E731
        return LinearMap(np_(A), np_(b), np_(R), np_(c), list(self.flux_ids),
                         list(self.measured_ids))

    @classmethod
    def from_sbml(
        cls,
        path: str | Path,
        measured: Sequence[str] | None = None,
        internal: Sequence[str] | None = None,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        eps: float = 1e-6,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        **kwargs: object,
    ) -> FluxAllocation:
        """Build from an SBML file (see `sbmlhybrid.flux.sbml` for the conventions).

        Args:
            path: SBML file (L3; flux bounds from the ``fbc`` package if present).
            measured: species ids whose rates are given; default every species
                with ``boundaryCondition="true"``.
            internal: balanced species; default every species without
                ``boundaryCondition`` that is not measured.
            weights: per measured species (mapping or sequence); default 1.
            eps: see the class docstring.
            bounds: ``reaction_id -> (lb, ub)`` overrides.
            **kwargs: passed to the constructor (``learn_weights``, ``settings``).
        """
        from sbmlhybrid.flux.sbml import read_network

        net = read_network(path)
        sp = net.species_ids
        if measured is None:
            measured = [s for s, bc in zip(sp, net.boundary) if bc]
        measured = list(measured)
        if internal is None:
            internal = [s for s, bc in zip(sp, net.boundary) if not bc and s not in measured]
        lb, ub = net.lb.copy(), net.ub.copy()
        unknown = [k for k in (bounds or {}) if k not in net.reaction_ids]
        if unknown:
            raise InputError([Issue(f"bounds given for unknown reaction {u!r}", file=str(path),
                                    entity=u) for u in unknown], header="Invalid flux bounds")
        for rid, (lo, hi) in (bounds or {}).items():
            j = net.reaction_ids.index(rid)
            lb[j], ub[j] = lo, hi
        if isinstance(weights, Mapping):
            extra = [k for k in weights if k not in measured]
            if extra:
                raise InputError([Issue(f"weight given for {x!r}, which is not measured",
                                        entity=x) for x in extra], header="Invalid weights")
            weights = [float(weights.get(s, 1.0)) for s in measured]
        return cls(net.S, measured, internal, lb, ub, weights, eps, flux_ids=net.reaction_ids,
                   metabolite_ids=sp, **kwargs)  # type: ignore[arg-type]


def allocate_fluxes(
    S: object,
    r: Tensor,
    measured_rows: RowSpec,
    internal_rows: RowSpec | None = None,
    lb: object = None,
    ub: object = None,
    weights: object = None,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Functional form of `FluxAllocation` (builds the module each call: the
    network checks run LPs, so build the module once for repeated use).

    Returns ``(v, residual)`` with shapes (batch, n_fluxes), (batch, n_measured).
    """
    layer = FluxAllocation(S, measured_rows, internal_rows, lb, ub, weights, eps)
    return layer(r)
