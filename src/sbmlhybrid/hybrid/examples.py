"""Network terms of the CHO fed-batch study (`petab_problems/cho_fedbatch`), hand-written.

Shared by `benchmarks/hybrid_cho.py`, `notebooks/cho_graybox.ipynb` and the tests, so that a
notebook rebuilds exactly the architecture whose weights a benchmark trained (same ids, same
cache key). Output scales are order-of-magnitude guesses a modeller would make from the data
(specific rates per 1e9 cells per day), not the true parameters.
"""

from __future__ import annotations

import torch
from torch import nn

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
