"""sbmlhybrid: SBML/PEtab models compiled with AMICI, fitted with pyPESTO, augmented with torch.

The front door (`sbmlhybrid.api`)::

    import sbmlhybrid as sh
    problem = sh.load_problem("problem.yaml")   # PEtab v1 / v2 / SciML, or SBML + table
    objective = sh.create_objective(problem)    # the one objective protocol
    result = sh.fit(objective, sh.FitSettings(n_starts=10), output="fit.hdf5")

The names below are imported on first use, so ``import sbmlhybrid.errors`` (or the CLI's
``--help``) does not load AMICI, pyPESTO and torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["FitSettings", "Objective", "Problem", "ProfileSettings", "SampleSettings",
           "__version__", "create_objective", "describe", "fit", "hybridize", "load_problem",
           "profile", "sample"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sbmlhybrid import api

        return getattr(api, name)
    raise AttributeError(f"module 'sbmlhybrid' has no attribute {name!r}")
