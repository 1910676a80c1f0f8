"""Gray box of the stiff_binding problem: a network replaces the induced transcription law.

Shared by `benchmarks/stiff_graybox.py`, `benchmarks/ude_speed.py` and the tests, so that all
build the same architecture (same ids, same compile-cache key). Reused: `sbmlhybrid.hybrid`
(`NetworkTerm`, and `examples.mlp` for the seeded float64 tanh MLP). Hand-written: the choice
of term, input and output scale.

Hidden term: reaction ``transcription``, ``k_tx*C^2/(K_C^2 + C^2)`` [au/h] with the true
``k_tx = 2``, ``K_C = 0.1`` nM (`make_problem.PARAMETERS`). The network sees the surface
complex ``C`` [nM] (scaled from the data range of ``obs_C`` to [-1, 1]); its softplus output
times 1 au/h (an order-of-magnitude guess from the mRNA data: M ~ 1 au decaying at ~1/h)
is the transcription rate. ``k_tx`` and ``K_C`` are no longer used and drop out of the fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROBLEM = HERE / "problem.yaml"
NAME = "tx"


def graybox_terms(widths: tuple[int, ...] = (8, 8), seed: int = 0) -> list:
    """[NetworkTerm]: a 1 -> widths -> 1 tanh MLP C -> rate of reaction ``transcription``."""
    from sbmlhybrid.hybrid import NetworkTerm
    from sbmlhybrid.hybrid.examples import mlp

    return [NetworkTerm(NAME, mlp(1, 1, widths, seed), ["C"], ["transcription"],
                        kind="reaction", output_transform="softplus", output_scale=1.0)]


def true_transcription(c: np.ndarray, k_tx: float = 2.0, k_c: float = 0.1) -> np.ndarray:
    """The true hidden term k_tx*C^2/(K_C^2 + C^2) [au/h] for complex levels `c` [nM]."""
    c = np.asarray(c, float)
    return k_tx * c**2 / (k_c**2 + c**2)


def graybox_problem(widths: tuple[int, ...] = (8, 8), seed: int = 0):
    """The hybridized PEtab problem (`sbmlhybrid.hybrid.HybridProblem`)."""
    from sbmlhybrid.hybrid import hybridize
    from sbmlhybrid.problem import load_problem

    return hybridize(load_problem(PROBLEM), graybox_terms(widths, seed))
