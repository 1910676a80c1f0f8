"""Network terms of the CHO fed-batch study (`petab_problems/cho_fedbatch`), hand-written.

Shared by `benchmarks/hybrid_cho.py`, `notebooks/cho_graybox.ipynb` and the tests, so that a
notebook rebuilds exactly the architecture whose weights a benchmark trained (same ids, same
cache key). Output scales are order-of-magnitude guesses a modeller would make from the data
(specific rates per 1e9 cells per day), not the true parameters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sbmlhybrid.errors import InputError
from sbmlhybrid.flux import FluxAllocation
from sbmlhybrid.hybrid.flux_coupling import ExchangeRate, FluxCoupling
from sbmlhybrid.hybrid.spec import NetworkTerm

# (target rate, output transform, output scale); the black box replaces all specific rates.
BLACKBOX_RATES: list[tuple[str, str, float]] = [
    ("mu", "softplus", 1.0),  # 1/d, growth
    ("mu_d", "softplus", 0.2),  # 1/d, death
    ("q_glc", "softplus", 0.5),  # mmol/(1e9 cells d), glucose uptake
    ("q_gln", "softplus", 0.1),  # glutamine uptake
    ("q_lac", "identity", 0.5),  # lactate production (negative after the shift)
    ("q_amm", "softplus", 0.1),  # ammonia production
    ("q_mab", "softplus", 10.0),  # mg/(1e9 cells d), antibody productivity
]


def mlp(n_in: int, n_out: int, widths: tuple[int, ...], seed: int) -> nn.Sequential:
    """Float64 tanh MLP n_in -> widths... -> n_out with torch's default init under `seed`."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    sizes = [n_in, *widths, n_out]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=torch.float64))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    torch.random.set_rng_state(gen_state)
    return nn.Sequential(*layers)


def cho_graybox_terms(widths: tuple[int, ...] = (6, 6), seed: int = 0) -> list[NetworkTerm]:
    """Gray box: a network (Lac, Glc) -> r_lac_shift replaces the lactate-shift rate law.

    The true law is ``q_lac_upt * Lac / (1 + Lac) * K_sw / (K_sw + Glc)`` [mmol/(1e9 cells d)];
    the rest of the model (growth, death, uptake, dilution) stays mechanistic.
    """
    return [NetworkTerm("lacshift", mlp(2, 1, widths, seed), ["Lac", "Glc"], ["r_lac_shift"],
                        output_transform="softplus", output_scale=0.3)]


def cho_blackbox_terms(widths: tuple[int, ...] = (8, 8), seed: int = 0) -> list[NetworkTerm]:
    """Black box: one network (Glc, Gln, Lac, Amm) -> all seven specific rates.

    Only the mass balances with feed dilution (rate rules) remain mechanistic.
    """
    rates, transforms, scales = zip(*BLACKBOX_RATES)
    return [NetworkTerm("rates", mlp(4, len(rates), widths, seed), ["Glc", "Gln", "Lac", "Amm"],
                        list(rates), output_transform=list(transforms),
                        output_scale=list(scales))]


def true_lactate_shift(lac: torch.Tensor | float, glc: torch.Tensor | float,
                       q_lac_upt: float = 0.3, k_sw: float = 2.0) -> torch.Tensor | float:
    """The CHO model's true r_lac_shift(Lac, Glc) [mmol/(1e9 cells d)], Lac and Glc in mM."""
    return q_lac_upt * lac / (1 + lac) * k_sw / (k_sw + glc)


CENTRAL_METABOLISM = "cho_central_metabolism/cho_central_metabolism.xml"

# measured metabolite of the central-metabolism network -> (CHO model rate, sign, unit kind,
# typical magnitude in mmol/(gDW h) or 1/h used as 1/weight)
_EXCHANGES: list[tuple[str, str, float, str, float]] = [
    ("GLC_ext", "q_glc", -1.0, "per_cell", 0.1),  # glucose uptake
    ("GLN_ext", "q_gln", -1.0, "per_cell", 0.02),  # glutamine uptake
    ("LAC_ext", "q_lac", 1.0, "per_cell", 0.1),  # lactate secretion (< 0 after the shift)
    ("NH4_ext", "q_amm", 1.0, "per_cell", 0.02),  # ammonia secretion
    ("BIOMASS", "mu", 1.0, "growth", 0.01),  # specific growth rate
    ("ANTIBODY", "q_mab", 1.0, "product", 0.005),  # specific productivity (g)
]


def cho_flux_coupling(network: str | Path, dry_mass: float = 0.1) -> FluxCoupling:
    """The CHO fed-batch model's six specific rates feeding the 30-flux central-metabolism
    network (`petab_problems/cho_central_metabolism`), with the network's flux bounds.

    Unit conversion: model rates are per 1e9 cells per day (mmol, mg), network fluxes per gram
    dry weight per hour (mmol, g), so ``factor = sign / (dry_mass * 24)`` (times 1e-3 for mg ->
    g); growth ``mu`` [1/d] becomes the BIOMASS flux [1/h] via 1/24. Oxygen, CO2 and alanine
    exchange are left free: the allocation predicts them.

    Args:
        network: The network SBML (``petab_problems/`` + `CENTRAL_METABOLISM`).
        dry_mass: Cell dry mass in g per 1e9 cells. 0.1 by default, below the physiological
            ~0.3: the fed-batch model's cell yields (1.5e9 cells per mmol glucose) are high, and
            at 0.3 g the allocation cannot supply the network's (illustrative) biomass ATP
            demand — its ATP-maintenance and antibody-synthesis bounds become active at every
            time point (`benchmarks/flux_cho.py` records this), so the rates it returns no
            longer resemble the kinetics.
    """
    if not dry_mass > 0:
        raise InputError(f"dry_mass must be > 0 g per 1e9 cells, got {dry_mass}")
    per = {"per_cell": 1.0 / (dry_mass * 24.0), "growth": 1.0 / 24.0,
           "product": 1e-3 / (dry_mass * 24.0)}
    measured = [m for m, *_ in _EXCHANGES]
    layer = FluxAllocation.from_sbml(network, measured=measured,
                                     weights={m: 1.0 / typ for m, *_, typ in _EXCHANGES})
    rates = {m: ExchangeRate(q, sign * per[kind]) for m, q, sign, kind, _t in _EXCHANGES}
    return FluxCoupling(layer, rates)
