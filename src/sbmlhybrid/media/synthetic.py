"""Synthetic culture-medium benchmark acting on CHO fed-batch kinetics.

Hand-written (numpy/scipy only). Medium components (>= 20, with units and
ranges) are mapped to log-multipliers on CHO kinetic parameters through
saturating needs, toxic excess, pairwise interactions and an osmolality
penalty; the multipliers are turned into culture outcomes by a
``simulate_outcomes(param_multipliers (n, n_params)) -> (n, n_outcomes)``
callable.

**Which simulator is used.** The intended simulator is the compiled AMICI CHO
fed-batch model under ``petab_problems/cho_fedbatch/`` (pass a wrapper of it
as ``simulate_outcomes``; its parameters must follow ``CHO_PARAMETERS``).
When no callable is given, a *fallback* small ODE of a CHO batch culture is
used: ``simulate_cho_batch`` (Monod growth on glucose and glutamine, lactate
and ammonia inhibition, death accelerated by starvation and by-products,
growth- and non-growth-associated titer), integrated with a vectorised fixed
step RK4 in numpy so that thousands of formulations take well under a second.
The benchmark results in this repository were produced with that fallback.

Cell lines differ by a similarity knob rho in [0, 1]: every coefficient of a
target line is ``rho * source + sqrt(1 - rho^2) * independent draw`` (on the
log/logit scale for constants), so rho = 1 is the source line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import qmc

# Kinetic parameters the components act on (order of the multiplier columns).
CHO_PARAMETERS = ("mu_max", "K_glc", "K_gln", "Y_x_glc", "Y_x_gln", "k_d", "K_lac", "K_amm",
                  "q_p", "Y_lac_glc", "Y_amm_gln", "glc0", "gln0")
# Nominal values (units: 1/day, mM, 1e6 cells/mL per mM, 1/day, mM, mM, mg/L/day per
# 1e6 cells/mL, mol/mol, mol/mol, mM, mM).
CHO_NOMINAL = np.array([0.9, 1.0, 0.3, 1.5, 5.0, 0.05, 40.0, 6.0, 15.0, 1.4, 0.7, 30.0, 4.0])
OUTCOMES = ("titer_g_per_L", "peak_vcd_1e6_per_mL", "final_viability", "ivcd_1e6_day_per_mL")
# Sign of "good" direction per parameter (+1 larger is better for the culture).
_GOOD = np.array([1, -1, -1, 1, 1, -1, 1, 1, 1, -1, -1, 0, 0], dtype=float)

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


def simulate_cho_batch(
    param_multipliers: np.ndarray, t_end: float = 12.0, dt: float = 0.05, x0: float = 0.3
) -> np.ndarray:
    """Fallback CHO batch culture ODE, vectorised over formulations (RK4, numpy).

    States: viable and dead cells (1e6 cells/mL), glucose, glutamine, lactate,
    ammonia (mM), titer (mg/L). Growth mu = mu_max * Monod(glc) * Monod(gln) *
    K_lac/(K_lac + lac) * K_amm/(K_amm + amm); death k_d * (1 + lac/K_lac + amm/K_amm
    + 4 * starvation); product q_p * Xv * (0.5 + 0.5 * (1 - mu/mu_max)).

    Args:
        param_multipliers: (n, len(CHO_PARAMETERS)) multipliers on CHO_NOMINAL.
        t_end: Culture duration (days). dt: RK4 step (days). x0: seeding density.

    Returns:
        (n, 4) outcomes in OUTCOMES order: titer (g/L), peak VCD, final viability, IVCD.
    """
    m = np.asarray(param_multipliers, dtype=float)
    if m.ndim != 2 or m.shape[1] != len(CHO_PARAMETERS):
        raise ValueError(f"param_multipliers must be (n, {len(CHO_PARAMETERS)}), got {m.shape}")
    p = m * CHO_NOMINAL
    mu_max, k_glc, k_gln, y_glc, y_gln, k_d, k_lac, k_amm, q_p, y_lac, y_amm = p[:, :11].T
    n = m.shape[0]
    s = np.zeros((7, n))
    s[0], s[2], s[3] = x0, p[:, 11], p[:, 12]

    def rhs(s: np.ndarray) -> np.ndarray:
        xv, _, g, q, lac, amm, _ = np.maximum(s, 0.0)
        mu = (mu_max * g / (k_glc + g) * q / (k_gln + q) * k_lac / (k_lac + lac)
              * k_amm / (k_amm + amm))
        starve = 0.5 / (0.5 + g) * 0.3 / (0.3 + q)
        kd = k_d * (1.0 + lac / k_lac + amm / k_amm + 4.0 * starve)
        qg = (mu / y_glc + 0.05) * g / (g + 0.1)
        qq = mu / y_gln * q / (q + 0.05)
        return np.stack([
            (mu - kd) * xv, kd * xv, -qg * xv, -qq * xv - 0.02 * q, y_lac * qg * xv,
            y_amm * qq * xv + 0.02 * q, q_p * xv * (0.5 + 0.5 * (1.0 - mu / mu_max)),
        ])

    peak, ivcd = s[0].copy(), np.zeros(n)
    for _ in range(int(round(t_end / dt))):
        k1 = rhs(s)
        k2 = rhs(s + 0.5 * dt * k1)
        k3 = rhs(s + 0.5 * dt * k2)
        k4 = rhs(s + dt * k3)
        ivcd += dt * s[0]
        s = np.maximum(s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), 0.0)
        peak = np.maximum(peak, s[0])
    viability = s[0] / np.maximum(s[0] + s[1], 1e-12)
    return np.stack([s[6] / 1000.0, peak, viability, ivcd], axis=1)


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
        simulate_outcomes: (n, n_params) multipliers -> (n, n_outcomes); defaults to
            the fallback ``simulate_cho_batch`` (see the module docstring).
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
        self.simulate_outcomes = simulate_outcomes or simulate_cho_batch
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
        for j in range(2, d):  # glucose/glutamine act through glc0/gln0
            k = rng.integers(1, 4)
            mask[j, rng.choice(11, size=k, replace=False)] = 1.0
        need = mask * rng.uniform(0.04, 0.16, size=(d, p)) * _GOOD
        pairs = np.array([rng.choice(np.arange(2, d), 2, replace=False) for _ in range(6)])
        pair_effect = np.zeros((6, p))
        pair_effect[np.arange(6), rng.choice([0, 8], size=6)] = rng.normal(0, 0.15, 6)
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
        base[11:] = 0.0  # initial substrates are set by the medium, not the line
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
        logm[:, 0] -= tox @ line.toxic
        logm[:, 5] += tox @ line.toxic
        inter = u[:, line.pairs[:, 0]] * u[:, line.pairs[:, 1]]
        logm += inter @ line.pair_effect
        dev = (self.osmolality(X) - line.osm_opt) / _OSM_WIDTH
        logm[:, 0] -= 0.3 * dev**2  # slower growth away from the optimum osmolality
        logm[:, 5] += 0.3 * np.maximum(dev, 0.0) ** 2  # hyperosmotic stress kills
        logm[:, 8] += 0.15 * np.clip(dev, -1, 2)  # ... but raises specific productivity
        m = np.exp(logm)
        m[:, 11] = X[:, 0] / CHO_NOMINAL[11]
        m[:, 12] = X[:, 1] / CHO_NOMINAL[12]
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
