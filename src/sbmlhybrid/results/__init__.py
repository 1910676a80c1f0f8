"""Figures and tables of fit results (PNG via matplotlib, pyPESTO's visualize where it fits).

Entry point: `write_fit_plots(result, objective, folder)`.
"""

from sbmlhybrid.results.plots import (
    best_x_free,
    plot_trajectories,
    simulation_frame,
    write_fit_plots,
)

__all__ = ["best_x_free", "plot_trajectories", "simulation_frame", "write_fit_plots"]
