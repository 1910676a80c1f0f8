"""Synthetic culture-medium benchmark simulated through the compiled AMICI CHO fed-batch model.

Hand-written generator (numpy/scipy); outcomes come from the project's compiled SBML model
``petab_problems/cho_fedbatch`` via ``sbmlhybrid.media.cho_simulator.AmiciCHOSimulator``.

Medium components (``COMPONENTS``: >= 20, with units, ranges, osmolality and cost per unit)
act on the CHO model's own kinetic parameters (``CHO_PARAMETERS``: mu_max, Monod and
inhibition constants, basal and ammonia-driven death, yields, maintenance, lactate shift,
antibody productivities alpha_mab/beta_mab) as log-multipliers on their nominal values:

* saturating needs: each component (except glucose/glutamine) helps 1-3 random parameters,
  in their "good" direction, through ``u (1 + h) / (h + u)`` of its scaled concentration u;
* toxic excess: about a third of the components slow growth (mu_max) and raise basal death
  (kd0) quadratically above an onset concentration;
* pairwise interactions: 6 component pairs act on mu_max or beta_mab through ``u_i u_j``;
* osmolality penalty: away from the line's optimum (about 300 mOsm/kg) growth slows,
  hyperosmotic media kill faster but raise specific productivity (beta_mab);
* glucose and glutamine set the model's initial medium (``Glc0``, ``Gln0``, mM) directly.

The CHO model is then simulated as a 14-day fed batch (condition ``fed_standard``) and read
out as titer (g/L), peak viable cell density (1e6 cells/mL), final viability and IVCD
(1e6 cells day/mL); ``SyntheticMediumBenchmark.outcomes`` adds log-normal noise. A failed
integration raises ``SimulationError`` (no silent garbage). Thousands of formulations take
a few ms each (AMICI ``run_simulations``).

Cell lines differ by a similarity knob rho in [0, 1]: need and interaction effects of a
target line are ``rho * source + sqrt(1 - rho^2) * independent draw``; half-saturations,
toxic strengths and onsets are ``rho``-weighted mixes (log/logit scale for the constants);
interacting pairs are the source's for rho >= 0.5; plus a baseline shift of the kinetics and
of the optimum osmolality scaled by ``sqrt(1 - rho^2)``. rho = 1 is the source line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import qmc

from sbmlhybrid.media.cho_simulator import (
    CHO_KINETIC,
    CHO_PARAMETERS,
    MEDIUM_INITIAL,
    OUTCOMES,
    AmiciCHOSimulator,
)

_N_KIN = len(CHO_KINETIC)
_I = {p: i for i, p in enumerate(CHO_PARAMETERS)}
# "Good" direction per parameter for the culture (+1: larger is better; 0: set by the medium).
_GOOD_BY_ID = {"mu_max": 1, "K_glc": -1, "K_gln": -1, "KI_lac": 1, "KI_amm": 1, "kd0": -1,
               "kd_amm": -1, "KD_amm": 1, "Y_x_glc": 1, "m_glc": -1, "Y_x_gln": 1,
               "Y_lac_glc": -1, "q_lac_upt": 1, "K_sw": 1, "Y_amm_gln": -1, "alpha_mab": 1,
               "beta_mab": 1, "Glc0": 0, "Gln0": 0}
_GOOD = np.array([_GOOD_BY_ID[p] for p in CHO_PARAMETERS], dtype=float)

# component, unit, min, max, osmolality contribution (mOsm/kg per unit), cost (per unit per L)
COMPONENTS = [
    ("glucose", "mM", 15.0, 60.0, 1.0, 0.002),
    ("glutamine", "mM", 2.0, 10.0, 1.0, 0.02),
    ("asparagine", "mM", 0.5, 8.0, 1.0, 0.02),
    ("serine", "mM", 0.5, 6.0, 1.0, 0.01),
    ("cysteine", "mM", 0.1, 3.0, 1.0, 0.05),
    ("tyrosine", "mM", 0.1, 2.0, 1.0, 0.08),
    ("leucine", "mM", 0.5, 6.0, 1.0, 0.01),
    ("NaCl", "mM", 20.0, 110.0, 1.9, 0.0005),
    ("KCl", "mM", 2.0, 10.0, 1.9, 0.001),
    ("sodium_bicarbonate", "mM", 10.0, 40.0, 1.9, 0.001),
    ("HEPES", "mM", 0.0, 25.0, 1.0, 0.03),
    ("pyruvate", "mM", 0.0, 5.0, 1.0, 0.02),
    ("insulin", "mg/L", 0.0, 20.0, 0.0, 0.5),
    ("transferrin", "mg/L", 0.0, 20.0, 0.0, 0.8),
    ("ferric_citrate", "uM", 0.0, 200.0, 0.002, 0.001),
    ("zinc_sulfate", "uM", 0.0, 30.0, 0.0, 0.001),
    ("copper_sulfate", "uM", 0.0, 2.0, 0.0, 0.002),
    ("sodium_selenite", "nM", 0.0, 100.0, 0.0, 0.0001),
    ("ethanolamine", "uM", 0.0, 50.0, 0.0, 0.001),
    ("putrescine", "uM", 0.0, 20.0, 0.0, 0.002),
    ("choline_chloride", "mg/L", 0.0, 40.0, 0.0, 0.001),
    ("vitamin_B12", "mg/L", 0.0, 2.0, 0.0, 0.05),
    ("folic_acid", "mg/L", 0.0, 10.0, 0.0, 0.01),
    ("pluronic_F68", "g/L", 0.0, 2.0, 0.0, 0.2),
    ("linoleic_acid", "mg/L", 0.0, 0.5, 0.0, 0.5),
    ("manganese_chloride", "uM", 0.0, 5.0, 0.0, 0.001),
]
_OSM_BASE = 40.0  # mOsm/kg from everything not in the table
_OSM_OPT, _OSM_WIDTH = 300.0, 100.0


@dataclass
class CellLine:
    """Coefficients of one cell line (all arrays indexed [component, parameter]).

    Attributes:
        need: (d, P) log-effect of a saturating need (signed toward "good").
        half_sat: (d,) half-saturation of each need, on the [0, 1] scaled concentration.
        toxic: (d,) strength of the toxic excess; tox_onset: (d,) onset in [0, 1].
        pairs: (k, 2) interacting component pairs; pair_effect: (k, P) their log-effects.
        base: (P,) log-multiplier of the line's baseline kinetics.
        rho: similarity to the source line.
        osm_opt: optimum osmolality of the line (mOsm/kg).
    """

    need: np.ndarray
    half_sat: np.ndarray
    toxic: np.ndarray
    tox_onset: np.ndarray
    pairs: np.ndarray
    pair_effect: np.ndarray
    base: np.ndarray
    rho: float
    osm_opt: float = _OSM_OPT


class SyntheticMediumBenchmark:
    """Medium components -> CHO parameter multipliers -> outcomes.

    Args:
        n_components: How many of ``COMPONENTS`` to use (20..26); glucose and
            glutamine are always included and set the initial substrates.
        seed: Seed of the source cell line's coefficients.
        simulate_outcomes: (n, len(CHO_PARAMETERS)) multipliers -> (n, len(OUTCOMES))
            outcomes; default: ``AmiciCHOSimulator()`` (the compiled CHO fed-batch model,
            condition fed_standard, 14 days; compiled/loaded on first use).
        noise_sd: Log-normal measurement noise (sd of log outcome).
    """

    def __init__(
        self, n_components: int = 24, seed: int = 0,
        simulate_outcomes: Callable[[np.ndarray], np.ndarray] | None = None,
        noise_sd: float = 0.05,
    ) -> None:
        if not 20 <= n_components <= len(COMPONENTS):
            raise ValueError(f"n_components must be in [20, {len(COMPONENTS)}]")
        self.table = COMPONENTS[:n_components]
        self.simulate_outcomes = simulate_outcomes or AmiciCHOSimulator()
        self.outcome_names = OUTCOMES
        self.noise_sd = noise_sd
        self.lower = np.array([c[2] for c in self.table])
        self.upper = np.array([c[3] for c in self.table])
        self.osm_coef = np.array([c[4] for c in self.table])
        self.cost_coef = np.array([c[5] for c in self.table])
        self._seed = seed
        self.source_line = self._draw(np.random.default_rng(seed))

    @property
    def components(self) -> list[str]:
        """Component names (the columns of X)."""
        return [c[0] for c in self.table]

    def search_space(self, levels: int = 5) -> pd.DataFrame:
        """Search-space table: component, unit, min, max, levels (+ osmolality, cost)."""
        return pd.DataFrame({
            "component": self.components, "unit": [c[1] for c in self.table],
            "min": self.lower, "max": self.upper, "levels": levels,
            "osmolality_per_unit": self.osm_coef, "cost_per_unit": self.cost_coef})

    def _draw(self, rng: np.random.Generator) -> CellLine:
        d, p = len(self.table), len(CHO_PARAMETERS)
        mask = np.zeros((d, p))
        for j in range(2, d):  # glucose/glutamine act through Glc0/Gln0
            k = rng.integers(1, 4)
            mask[j, rng.choice(_N_KIN, size=k, replace=False)] = 1.0
        need = mask * rng.uniform(0.04, 0.16, size=(d, p)) * _GOOD
        pairs = np.array([rng.choice(np.arange(2, d), 2, replace=False) for _ in range(6)])
        pair_effect = np.zeros((6, p))
        targets = rng.choice([_I["mu_max"], _I["beta_mab"]], size=6)
        pair_effect[np.arange(6), targets] = rng.normal(0, 0.15, 6)
        toxic = rng.uniform(0.1, 0.4, d) * (rng.uniform(size=d) < 0.35)  # ~1/3 are toxic
        return CellLine(need, rng.uniform(0.05, 0.5, d), toxic, rng.uniform(0.6, 0.9, d),
                        pairs, pair_effect, np.zeros(p), 1.0)

    def cell_line(self, rho: float, seed: int = 1) -> CellLine:
        """A cell line with similarity ``rho`` to the source (rho = 1: the source)."""
        if not 0.0 <= rho <= 1.0:
            raise ValueError("rho must be in [0, 1]")
        src, new = self.source_line, self._draw(np.random.default_rng((self._seed, seed)))
        a, b = rho, np.sqrt(1.0 - rho**2)

        def logit(v):
            return np.log(v / (1 - v))

        def expit(v):
            return 1 / (1 + np.exp(-v))

        base = b * 0.3 * np.random.default_rng((self._seed, seed, 7)).normal(size=src.base.shape)
        osm_shift = np.random.default_rng((self._seed, seed, 8)).normal()
        base[_N_KIN:] = 0.0  # initial substrates are set by the medium, not the line
        return CellLine(
            need=a * src.need + b * new.need,
            half_sat=np.exp(a * np.log(src.half_sat) + (1 - a) * np.log(new.half_sat)),
            toxic=a * src.toxic + (1 - a) * new.toxic,
            tox_onset=expit(a * logit(src.tox_onset) + (1 - a) * logit(new.tox_onset)),
            pairs=src.pairs if rho >= 0.5 else new.pairs,
            pair_effect=a * src.pair_effect + b * new.pair_effect,
            base=src.base + base, rho=float(rho),
            osm_opt=_OSM_OPT + b * 40.0 * float(osm_shift))

    def osmolality(self, X: np.ndarray) -> np.ndarray:
        """Osmolality (mOsm/kg), shape (n,), of raw compositions X (n, d)."""
        return _OSM_BASE + np.asarray(X, float) @ self.osm_coef

    def multipliers(self, X: np.ndarray, line: CellLine) -> np.ndarray:
        """Parameter multipliers (n, len(CHO_PARAMETERS)) of raw compositions X (n, d)."""
        X = np.asarray(X, dtype=float)
        u = np.clip((X - self.lower) / (self.upper - self.lower), 0.0, 1.0)
        sat = u * (1 + line.half_sat) / (line.half_sat + u)  # 0 at u=0, 1 at u=1
        tox = np.maximum(u - line.tox_onset, 0.0) ** 2 / (1 - line.tox_onset) ** 2
        logm = (sat - 0.5) @ line.need + line.base
        mu, kd0, beta = _I["mu_max"], _I["kd0"], _I["beta_mab"]
        logm[:, mu] -= tox @ line.toxic
        logm[:, kd0] += tox @ line.toxic
        inter = u[:, line.pairs[:, 0]] * u[:, line.pairs[:, 1]]
        logm += inter @ line.pair_effect
        dev = (self.osmolality(X) - line.osm_opt) / _OSM_WIDTH
        logm[:, mu] -= 0.3 * dev**2  # slower growth away from the optimum osmolality
        logm[:, kd0] += 0.3 * np.maximum(dev, 0.0) ** 2  # hyperosmotic stress kills
        logm[:, beta] += 0.15 * np.clip(dev, -1, 2)  # ... but raises specific productivity
        m = np.exp(logm)
        m[:, _I["Glc0"]] = X[:, 0] / MEDIUM_INITIAL["Glc0"]
        m[:, _I["Gln0"]] = X[:, 1] / MEDIUM_INITIAL["Gln0"]
        return m

    def outcomes(self, X: np.ndarray, line: CellLine,
                 rng: np.random.Generator | None = None) -> np.ndarray:
        """Outcomes (n, n_outcomes) of compositions X (n, d); noisy when rng is given."""
        y = np.asarray(self.simulate_outcomes(self.multipliers(X, line)), dtype=float)
        if rng is not None and self.noise_sd > 0:
            y = y * np.exp(rng.normal(0.0, self.noise_sd, size=y.shape))
        return y

    def sample(self, n: int, line: CellLine, rng: np.random.Generator) -> tuple[pd.DataFrame,
                                                                                 np.ndarray]:
        """Latin-hypercube formulations (DataFrame n x d, user units) and noisy outcomes."""
        u = qmc.LatinHypercube(d=len(self.table), seed=rng).random(n)
        X = self.lower + u * (self.upper - self.lower)
        return pd.DataFrame(X, columns=self.components), self.outcomes(X, line, rng)
