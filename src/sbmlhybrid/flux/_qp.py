"""Batched strictly convex QP with one shared Hessian, and its implicit gradient.

Solves, for every row b of ``q``::

    z*_b = argmin_z  1/2 z^T P z + q_b^T z   s.t.  G z <= h

with ``P`` (k, k) symmetric positive definite, ``G`` (m, k) with unit-norm rows
and ``h`` (m,) shared by the whole batch. The feasible set does not depend on
``q``; it has been checked non-empty, with a non-empty interior, by the caller.

Algorithm (all float64 torch, batched over b):

1. Closed form: ``z = -P^{-1} q`` (one Cholesky factorisation). Rows whose
   unconstrained minimiser satisfies ``G z <= h`` are done: no bound is active.
2. The remaining rows run a dual active-set method started from the
   unconstrained minimiser, adding the most violated bound or dropping the most
   negative multiplier one at a time and solving each working set exactly via
   the Schur complement ``G_A P^{-1} G_A^T`` (batched Cholesky). It needs
   about as many steps as there are active bounds; rows that end with a KKT
   certificate are done.
3. Rows that do not (cycling, or a linearly dependent working set at a
   degenerate vertex) run a Mehrotra predictor-corrector primal-dual interior
   point method on the scaled problem (batched k x k Cholesky per iteration).
4. Polish of those rows: the active set is read off the interior point solution
   (``lambda_i > s_i``) and refined by primal active-set steps, each solving the
   equality-constrained QP on the current face exactly (null-space method,
   batched ``eigh``). The result is kept if it is primal feasible and its
   multipliers are non-negative (KKT certificate); otherwise the interior point
   solution is kept, with a warning.

Gradient: on the face ``G_A z = h_A`` the solution satisfies the KKT system; its
differential is ``dz = J (dP z + dq)`` with ``J = -M (M^T P M)^{-1} M^T`` and
``M`` an orthonormal basis of ``null(G_A)``. ``J`` is symmetric, so the
vector-Jacobian products are ``dL/dq = J g`` and ``dL/dP = sym(J g z^T)``. ``J``
is computed once in the forward pass and reused (on the active-set path in the
equivalent form ``J = -P^{-1} + P^{-1} G_A^T (G_A P^{-1} G_A^T)^{-1} G_A P^{-1}``,
valid there because that path only accepts independent working sets). The
formula is exact wherever
strict complementarity holds (the generic case); it does not need the active
constraints to be linearly independent, which matters for metabolic networks
(degenerate vertices are structural there).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class QPSettings:
    """Tolerances and limits of the batched QP solver.

    Attributes:
        tol: interior point stopping tolerance (scaled problem).
        max_iter: interior point iteration limit.
        feas_tol: relative tolerance of the final KKT certificate.
        active_set_steps: limit of the Schur active-set method (None: 3 m + 3;
            0 sends every row with an active bound to the interior point path).
    """

    tol: float = 1e-9
    max_iter: int = 80
    feas_tol: float = 1e-9
    active_set_steps: int | None = None


def _chol_solve(L: Tensor, rhs: Tensor) -> Tensor:
    """Solve (L L^T) x = rhs for a batch of vectors rhs (..., k)."""
    return torch.cholesky_solve(rhs.unsqueeze(-1), L).squeeze(-1)


def _max_step(x: Tensor, dx: Tensor) -> Tensor:
    """Largest alpha in [0, 1] with x + alpha dx >= 0, per batch row."""
    ratio = torch.where(dx < 0, -x / dx, torch.full_like(x, float("inf")))
    return ratio.amin(dim=-1).clamp(max=1.0) if x.shape[-1] else x.new_ones(x.shape[0])


def interior_point(
    P: Tensor, q: Tensor, G: Tensor, h: Tensor, settings: QPSettings
) -> tuple[Tensor, Tensor, Tensor]:
    """Mehrotra predictor-corrector on a batch; returns (z, s, lam) unscaled-z.

    Shapes: P (k, k), q (B, k), G (m, k), h (m,). Returns z (B, k) and the
    slacks s (B, m) and multipliers lam (B, m) of the *scaled* problem (only
    their ratio is used, to identify the active set).
    """
    B, m = q.shape[0], G.shape[0]
    pscale = P.abs().max().clamp(min=torch.finfo(P.dtype).tiny)
    Ps = P / pscale
    L0 = torch.linalg.cholesky(Ps)
    z_unc = _chol_solve(L0.expand(B, -1, -1), -q / pscale)
    hmax = h.abs().max() if m else h.new_zeros(())
    sigma_z = torch.maximum(z_unc.abs().amax(dim=-1), hmax).clamp(min=1e-30)  # (B,)
    qs = q / (pscale * sigma_z[:, None])
    hs = h[None, :] / sigma_z[:, None]
    # CVXOPT-style start: minimise 1/2 z^T P z + q^T z + 1/2 ||G z - h||^2, then shift.
    L1 = torch.linalg.cholesky(Ps + G.T @ G)
    z = _chol_solve(L1.expand(B, -1, -1), -qs + hs @ G)
    s = hs - z @ G.T
    lam = -s.clone()
    s = s + (1.0 - s.amin(dim=-1, keepdim=True)).clamp(min=0.0)
    lam = lam + (1.0 - lam.amin(dim=-1, keepdim=True)).clamp(min=0.0)
    tol = settings.tol
    qn = 1.0 + qs.abs().amax(dim=-1)
    hn = 1.0 + hs.abs().amax(dim=-1)
    done = torch.zeros(B, dtype=torch.bool, device=q.device)
    eye = torch.eye(P.shape[0], dtype=P.dtype, device=P.device)
    for _ in range(settings.max_iter):
        rd = z @ Ps + qs + lam @ G
        rp = z @ G.T + s - hs
        mu = (s * lam).sum(-1) / m
        done = (
            (rd.abs().amax(-1) <= tol * qn) & (rp.abs().amax(-1) <= tol * hn) & (mu <= tol)
        )
        if bool(done.all()):
            break
        d = lam / s
        H = Ps + torch.einsum("mk,bm,mj->bkj", G, d, G)
        H = torch.where(done[:, None, None], eye, H)  # converged rows take no step
        L, info = torch.linalg.cholesky_ex(H)
        reg = 1e-14 * H.diagonal(dim1=-2, dim2=-1).amax(-1)
        for _ in range(12):  # near convergence D = lam/s spans ~1e20: regularise if needed
            if not bool((info != 0).any()):
                break
            H = H + (reg * (info != 0))[:, None, None] * eye
            reg = reg * 100.0
            L, info = torch.linalg.cholesky_ex(H)
        # predictor (affine scaling)
        dz = _chol_solve(L, -rd - (d * rp - lam) @ G)
        ds = -rp - dz @ G.T
        dl = -(s * lam + lam * ds) / s
        a_aff = torch.minimum(_max_step(s, ds), _max_step(lam, dl))
        mu_aff = ((s + a_aff[:, None] * ds) * (lam + a_aff[:, None] * dl)).sum(-1) / m
        sig = (mu_aff / mu).clamp(min=0.0, max=1.0) ** 3
        # corrector
        rc = s * lam + ds * dl - (sig * mu)[:, None]
        dz = _chol_solve(L, -rd - (d * rp - rc / s) @ G)
        ds = -rp - dz @ G.T
        dl = -(rc + lam * ds) / s
        alpha = 0.99 * torch.minimum(_max_step(s, ds), _max_step(lam, dl))
        alpha = torch.where(done, torch.zeros_like(alpha), alpha)
        z = z + alpha[:, None] * dz
        s = (s + alpha[:, None] * ds).clamp(min=1e-300)
        lam = (lam + alpha[:, None] * dl).clamp(min=1e-300)
    return z * sigma_z[:, None], s, lam


def face_solve(
    P: Tensor, q: Tensor, G: Tensor, h: Tensor, z: Tensor, active: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact minimiser on the faces ``G_A z = h_A`` (one face per batch row).

    Args:
        P: (k, k); q: (B, k); G: (m, k); h: (m,); z: (B, k) starting point
        (nearly on the face); active: (B, m) bool.

    Returns:
        z_face (B, k), J (B, k, k) the solution Jacobian ``dz/dq``, and the
        least-norm multipliers lam (B, m) (zero off the active set).
    """
    B, k = z.shape
    a = active.to(P.dtype)
    Ga = a[:, :, None] * G[None]  # (B, m, k)
    GtG = Ga.transpose(1, 2) @ Ga
    evals, U = torch.linalg.eigh(GtG)
    rng = evals > 1e-9 * evals.amax(-1, keepdim=True).clamp(min=1.0)
    inv_e = torch.where(rng, 1.0 / torch.where(rng, evals, torch.ones_like(evals)), 0.0)
    pinv_gtg = (U * inv_e[:, None, :]) @ U.transpose(1, 2)
    viol = a * (z @ G.T - h)  # (B, m)
    z_p = z - (pinv_gtg @ (Ga.transpose(1, 2) @ viol.unsqueeze(-1))).squeeze(-1)
    nul = (~rng).to(P.dtype)
    Pt = nul[:, :, None] * (U.transpose(1, 2) @ P @ U) * nul[:, None, :]
    Pt = Pt + torch.diag_embed(1.0 - nul)
    Un = U * nul[:, None, :]
    J = -Un @ torch.linalg.solve(Pt, Un.transpose(1, 2))
    g = z_p @ P + q
    z_face = z_p + (J @ g.unsqueeze(-1)).squeeze(-1)
    grad = -(z_face @ P + q)  # = G_A^T lam
    lam = (Ga @ (pinv_gtg @ grad.unsqueeze(-1))).squeeze(-1)
    return z_face, J, lam


def refine(
    P: Tensor, q: Tensor, G: Tensor, h: Tensor, z: Tensor, work: Tensor, settings: QPSettings
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Primal active-set iterations from a (nearly) feasible z and working set.

    The interior point solution is accurate to its tolerance only where the
    objective is curved; along directions that only ``eps`` regularises it can
    be off by far more, and weakly active bounds are ambiguous. A few
    active-set steps (face minimiser, ratio test, add the blocking bound or
    drop the most negative multiplier) make the result exact.

    Returns z (B, k), J (B, k, k), the working set (B, m) and a bool (B,)
    KKT certificate (primal feasible, multipliers >= 0, within tolerance).
    """
    work = work.clone()
    scale = 1.0 + torch.maximum(z.abs().amax(-1), h.abs().max())
    lam_tol = settings.feas_tol * (1.0 + q.abs().amax(-1) + P.abs().max() * scale)
    rows = torch.arange(z.shape[0], device=z.device)
    for _ in range(3 * G.shape[0] + 5):
        zf, J, lam = face_solve(P, q, G, h, z, work)
        p = zf - z
        Gp = p @ G.T
        slack = (h - z @ G.T).clamp(min=0.0)
        cand = ~work & (Gp > 1e-14 * (1.0 + p.abs().amax(-1, keepdim=True)))
        ratio = torch.where(cand, slack / torch.where(cand, Gp, torch.ones_like(Gp)), torch.inf)
        alpha, block = ratio.min(-1)
        blocked = alpha < 1.0
        z = z + alpha.clamp(max=1.0)[:, None] * p
        work[rows[blocked], block[blocked]] = True
        lam_min, drop = lam.min(-1)
        dropping = ~blocked & (lam_min < -lam_tol)
        work[rows[dropping], drop[dropping]] = False
        if not bool((blocked | dropping).any()):
            break
    zf, J, lam = face_solve(P, q, G, h, z, work)
    ok = ((zf @ G.T - h) <= settings.feas_tol * scale[:, None]).all(-1)
    ok &= (lam >= -lam_tol[:, None]).all(-1)
    return zf, J, work, ok


def schur_active_set(
    Pinv: Tensor, q: Tensor, z_unc: Tensor, G: Tensor, h: Tensor, settings: QPSettings
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Dual active-set iterations (Schur complement, Cholesky only).

    Starts from the unconstrained minimiser with an empty working set; each
    step drops the most negative multiplier, or else adds the most violated
    bound, and solves the KKT system of the new working set exactly through the
    Schur complement ``S = G_W P^{-1} G_W^T`` (masked to (m, m), identity off
    the set). Rows that converge carry a KKT certificate; rows that cycle or
    whose working set is linearly dependent (singular ``S``) are left to the
    interior point path.

    Returns z (B, k), J (B, k, k), working set (B, m), certified (B,).
    """
    PG = Pinv @ G.T  # (k, m)
    GPG = G @ PG  # (m, m)
    gz = z_unc @ G.T - h  # (B, m)
    scale = 1.0 + torch.maximum(z_unc.abs().amax(-1), h.abs().max())
    feas = settings.feas_tol * scale[:, None]
    lam_tol = settings.feas_tol * (1.0 + q.abs().amax(-1, keepdim=True))
    B, m = gz.shape

    def kkt(w: Tensor, gz_w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Multipliers of working sets w (n, m): Cholesky factor, singular flag, lam."""
        a = w.to(q.dtype)
        S = a[:, :, None] * GPG * a[:, None, :] + torch.diag_embed(1.0 - a)
        L, info = torch.linalg.cholesky_ex(S)
        dL = L.diagonal(dim1=-2, dim2=-1)
        singular = (info != 0) | ((dL.amin(-1) / dL.amax(-1)) ** 2 < 1e-11)
        return L, singular, torch.cholesky_solve((a * gz_w).unsqueeze(-1), L).squeeze(-1)

    work = torch.zeros(B, m, dtype=torch.bool, device=q.device)
    ok = torch.zeros(B, dtype=torch.bool, device=q.device)
    todo = torch.arange(B, device=q.device)  # rows still changing their working set
    steps = 3 * m + 3 if settings.active_set_steps is None else settings.active_set_steps
    for it in range(steps + 1):
        w_t, gz_t = work[todo], gz[todo]
        if it:  # G z - h at the working set's solution is gz - GPG lam
            _, singular, lam_t = kkt(w_t, gz_t)
            viol = torch.where(w_t, 0.0, gz_t - lam_t @ GPG - feas[todo])
            negl = torch.where(w_t, lam_t + lam_tol[todo], 0.0)
        else:
            singular = torch.zeros(todo.shape[0], dtype=torch.bool, device=q.device)
            viol, negl = gz_t - feas[todo], torch.zeros_like(gz_t)
        vmax, vi = viol.max(-1)
        nmin, ni = negl.min(-1)
        drop = (nmin < 0) & ~singular
        add = ~drop & (vmax > 0) & ~singular
        ok[todo] = ~singular & ~drop & ~add
        moving = drop | add
        if not bool(moving.any()) or it == steps:
            break
        # one change per row and step: drop the most negative multiplier, else add
        w_t[moving.nonzero().squeeze(-1), torch.where(drop, ni, vi)[moving]] = add[moving]
        work[todo] = w_t
        todo = todo[moving]
    L, _, lam = kkt(work, gz)  # final working sets, all rows at once
    z = z_unc - lam @ PG.T
    a = work.to(q.dtype)
    J = -Pinv + (PG * a[:, None, :]) @ torch.cholesky_solve(a[:, :, None] * PG.T, L)
    return z, J, work, ok


def solve_batch(
    P: Tensor, q: Tensor, G: Tensor, h: Tensor, settings: QPSettings
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Solve the batch; returns (z, J, active, J_free).

    ``J`` is (B, k, k) when any row has an active bound, else None (then every
    row uses ``J_free = -P^{-1}``). ``active`` is (B, m) bool.
    """
    B, m = q.shape[0], G.shape[0]
    L = torch.linalg.cholesky(P)
    Pinv = torch.cholesky_inverse(L)
    J_free = -Pinv
    z = q @ J_free
    active = torch.zeros(B, m, dtype=torch.bool, device=q.device)
    if m == 0:
        return z, None, active, J_free
    scale = 1.0 + torch.maximum(z.abs().amax(-1), h.abs().max())
    bad = ((z @ G.T - h) > settings.feas_tol * scale[:, None]).any(-1)
    if not bool(bad.any()):
        return z, None, active, J_free
    idx = torch.nonzero(bad).squeeze(-1)
    qb = q[idx]
    zb, Jb, act, ok = schur_active_set(Pinv, qb, z[idx], G, h, settings)
    if not bool(ok.all()):  # interior point + refinement for the rest
        rest = torch.nonzero(~ok).squeeze(-1)
        zi, s, lam = interior_point(P, qb[rest], G, h, settings)
        zf, Jr, act_r, ok_r = refine(P, qb[rest], G, h, zi, lam > s, settings)
        if not bool(ok_r.all()):
            warnings.warn(
                f"flux QP: {int((~ok_r).sum())} of {B} problems could not be certified "
                "optimal (KKT check failed); returning the interior point solution for those",
                RuntimeWarning,
                stacklevel=3,
            )
        zb[rest] = torch.where(ok_r[:, None], zf, zi)
        Jb[rest] = Jr
        act[rest] = act_r
    z = z.clone()
    z[idx] = zb
    active[idx] = act
    J = J_free.expand(B, -1, -1).clone()
    J[idx] = Jb
    return z, J, active, J_free


class QPFunction(torch.autograd.Function):
    """autograd wrapper: (P, q) -> z* with exact implicit backward (G, h constant)."""

    @staticmethod
    def forward(ctx, P: Tensor, q: Tensor, G: Tensor, h: Tensor, settings: QPSettings):  # type: ignore[override]
        z, J, active, J_free = solve_batch(P.detach(), q.detach(), G, h, settings)
        ctx.save_for_backward(z, J_free if J is None else J)
        ctx.batched_J = J is not None
        ctx.mark_non_differentiable(active)
        return z, active

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz: Tensor, _gactive: Tensor | None):  # type: ignore[override]
        z, J = ctx.saved_tensors
        if ctx.batched_J:
            u = (J @ gz.unsqueeze(-1)).squeeze(-1)
        else:
            u = gz @ J
        gP = None
        if ctx.needs_input_grad[0]:
            outer = u.T @ z
            gP = 0.5 * (outer + outer.T)
        gq = u if ctx.needs_input_grad[1] else None
        return gP, gq, None, None, None
