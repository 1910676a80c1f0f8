"""`TorchODEObjective`: the former adapter of `TorchODE` to the objective protocol.

`TorchODE` now implements the protocol itself (`sbmlhybrid.hybrid._torch_protocol`:
``evaluate`` on any condition subset, ``simulate`` -> PEtab simulation table,
``pypesto_problem``), so pass a `TorchODE` wherever an `Objective` is taken. This name stays
for code written against the adapter: it builds (or takes) the `TorchODE` and hands every
attribute to it (hand-written delegation, nothing computed here).
"""

from __future__ import annotations

from typing import Any

from sbmlhybrid.hybrid.torch_ode import TorchODE

__all__ = ["TorchODEObjective"]


class TorchODEObjective:
    """A `TorchODE` behind its former adapter: every attribute is the ODE's own.

    Args:
        problem: The (hybrid) PEtab problem.
        ode: Its `TorchODE`; built from `problem` with `ode_options` if omitted.
        **ode_options: `TorchODE` keyword arguments (``flux_coupling``, ``max_step``).
    """

    def __init__(self, problem: Any, ode: TorchODE | None = None, **ode_options: Any):
        self.ode = ode if ode is not None else TorchODE(problem, **ode_options)

    def __getattr__(self, name: str) -> Any:
        if name == "ode":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.ode, name)
