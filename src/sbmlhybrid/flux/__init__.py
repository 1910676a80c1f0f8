"""Differentiable flux allocation: a batched constrained least-squares layer.

`FluxAllocation` maps measured exchange rates ``r`` (batch, n_measured) to the
flux vector ``v*`` of a stoichiometric network that explains them best::

    v* = argmin_v ||W (S_m v - r)||^2 + eps ||v||^2   s.t.  S_int v = 0,  lb <= v <= ub

and returns ``(v*, S_m v* - r)``; the second output is the inconsistency of the
measurements with the network. Gradients with respect to ``r`` and to the weights
are exact (implicit differentiation of the KKT conditions at the solution).

What is hand-written here, and why: the layer is meant to sit inside the
right-hand side of an ODE (the hybrid CHO model), where it is called thousands
of times per integration with small batches, needs float64 and exact
derivatives, and must not leave torch. No library does that: cvxpylayers
canonicalises to a cone program and solves every batch element with a CPU
solver through numpy (orders of magnitude slower at this size, see
``benchmarks/flux_layer.py``, and accurate only to the solver tolerance);
qpth (a batched torch interior point method) needs full-row-rank equality
constraints, while stoichiometric balances are usually rank deficient, and is
unmaintained. So the package contains a small dense solver
specialised to this problem family:

* ``_network``: validation, infeasibility diagnosis (LPs), elimination of the
  balances via a null-space basis, detection of fixed and coupled fluxes;
* ``_qp``: closed-form solve when no bound is active, a batched active-set
  method (Schur complement, exact) otherwise, a batched Mehrotra interior point
  method with active-set polish as fallback, a KKT certificate for every
  constrained row, and the implicit-gradient `torch.autograd.Function`;
* ``layer``: the `torch.nn.Module`, `LinearMap` (``v = A r + b`` for writing
  the unconstrained allocation into SBML as assignment rules);
* ``sbml``: reading the network (``boundaryCondition`` marks exchanged species,
  flux bounds from the ``fbc`` package).
"""

from sbmlhybrid.flux._qp import QPSettings
from sbmlhybrid.flux.layer import FluxAllocation, LinearMap, allocate_fluxes

__all__ = ["FluxAllocation", "LinearMap", "QPSettings", "allocate_fluxes"]
