"""Figures of an uncertainty analysis: profiles with their threshold, MCMC traces, marginals.

Reused: `pypesto.visualize.profiles`, `sampling_parameter_traces`, `sampling_1d_marginals`.
Added: the likelihood-ratio threshold line of the chosen confidence level on every profile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pypesto
import pypesto.profile
import pypesto.visualize


def _save(axes, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = np.atleast_1d(axes).ravel()[0].get_figure()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_profile_plots(result: pypesto.Result, folder: str | Path,
                        alpha: float = 0.95) -> list[Path]:
    """profiles.png: likelihood ratio along each profiled parameter, threshold dashed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    axes = pypesto.visualize.profiles(result, show_bounds=True)
    threshold = pypesto.profile.chi2_quantile_to_ratio(alpha)
    for ax in np.atleast_1d(axes).ravel():
        ax.axhline(threshold, color="k", ls="--", lw=0.8,
                   label=f"{alpha:.0%} threshold")
    return [_save(axes, folder / "profiles.png")]


def write_sample_plots(result: pypesto.Result, folder: str | Path) -> list[Path]:
    """sample_traces.png (chain per parameter, burn-in marked) and sample_marginals.png."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    traces = pypesto.visualize.sampling_parameter_traces(result, use_problem_bounds=False)
    marginals = pypesto.visualize.sampling_1d_marginals(result)
    return [_save(traces, folder / "sample_traces.png"),
            _save(marginals, folder / "sample_marginals.png")]
