"""Figures and tables of fit results (PNG via matplotlib, pyPESTO's visualize where it fits).

Entry point: `write_fit_plots(result, objective, folder)`.
"""

from sbmlhybrid.results.analysis_plots import write_profile_plots, write_sample_plots
from sbmlhybrid.results.plots import (
    best_x_free,
    plot_trajectories,
    simulation_frame,
    write_fit_plots,
)

__all__ = ["best_x_free", "plot_trajectories", "simulation_frame", "write_fit_plots",
           "write_profile_plots", "write_sample_plots"]
