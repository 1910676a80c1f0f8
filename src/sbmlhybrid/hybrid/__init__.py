"""Hybrid models: torch modules for unknown kinetics compiled into the AMICI model.

Entry point: `hybridize(problem, [NetworkTerm(...)]) -> HybridProblem` (a `Problem`, so
`sbmlhybrid.create_objective`, `fit` and the optimizers apply; it is compiled with its own
code-generation choice, `HYBRID_CODEGEN`, see `sbmlhybrid.hybrid.objective`).
`HybridProblem.hybrid` is the `HybridModel`: weight ids, loading trained weights back into the
torch modules (`load_weights(parameter_values(objective, x))`), the learned term in torch
(`term_values`) and `apply` to held-out data of the same model (no recompile).

Flux allocation inside a kinetic model: `couple_flux_allocation(problem, FluxCoupling(layer,
{metabolite: ExchangeRate(rate_id, factor)}))` compiles the unconstrained allocation into the
model; `TorchODE(problem, flux_coupling=...)` simulates it in torch with the flux bounds
enforced, `train` fits that path. `TorchODE` is itself an object of the objective protocol
(`evaluate` on condition subsets, `simulate`, `pypesto_problem`), so `fit`, `profile`,
`sample` and `sbmlhybrid.layers.ObjectiveLayer` take it; `TorchODEObjective` is its former
adapter, now a plain delegate.
"""

from sbmlhybrid.hybrid.flux_coupling import (
    ExchangeRate,
    FluxCoupling,
    couple_flux_allocation,
    flux_readouts,
    linear_map_violations,
)
from sbmlhybrid.hybrid.hybridize import (
    HybridModel,
    HybridProblem,
    hybridize,
    parameter_values,
    set_nominal,
)
from sbmlhybrid.hybrid.network import ACTIVATIONS, OUTPUT_TRANSFORMS, check_module
from sbmlhybrid.hybrid.objective import (
    HYBRID_CODEGEN,
    codegen_of,
    compile_hybrid,
    create_hybrid_objective,
    objective_of,
)
from sbmlhybrid.hybrid.spec import KINDS, NetworkTerm
from sbmlhybrid.hybrid.torch_objective import TorchODEObjective
from sbmlhybrid.hybrid.torch_ode import TorchODE, train

__all__ = ["ACTIVATIONS", "HYBRID_CODEGEN", "KINDS", "OUTPUT_TRANSFORMS", "ExchangeRate",
           "FluxCoupling", "HybridModel", "HybridProblem", "NetworkTerm", "TorchODE",
           "TorchODEObjective", "check_module", "codegen_of", "compile_hybrid",
           "couple_flux_allocation", "create_hybrid_objective", "flux_readouts", "hybridize",
           "linear_map_violations", "objective_of", "parameter_values", "set_nominal", "train"]
