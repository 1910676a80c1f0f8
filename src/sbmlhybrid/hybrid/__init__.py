"""Hybrid models: torch modules for unknown kinetics compiled into the AMICI model.

Entry point: `hybridize(problem, [NetworkTerm(...)]) -> HybridProblem` (a `Problem`, so the
foundation's `create_objective`, `fit` and optimizers apply). `HybridProblem.hybrid` is the
`HybridModel`: weight ids, loading trained weights back into the torch modules
(`load_weights(parameter_values(objective, x))`), the learned term in torch (`term_values`)
and `apply` to held-out data of the same model (no recompile).

Flux allocation inside a kinetic model: `couple_flux_allocation(problem, FluxCoupling(layer,
{metabolite: ExchangeRate(rate_id, factor)}))` compiles the unconstrained allocation into the
model; `TorchODE(problem, flux_coupling=...)` simulates it in torch with the flux bounds
enforced, `train` fits that path.
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
    compile_hybrid,
    create_hybrid_objective,
)
from sbmlhybrid.hybrid.spec import KINDS, NetworkTerm
from sbmlhybrid.hybrid.torch_ode import TorchODE, train

__all__ = ["ACTIVATIONS", "HYBRID_CODEGEN", "KINDS", "OUTPUT_TRANSFORMS", "ExchangeRate",
           "FluxCoupling", "HybridModel", "HybridProblem", "NetworkTerm", "TorchODE",
           "check_module", "compile_hybrid", "couple_flux_allocation", "create_hybrid_objective",
           "flux_readouts", "hybridize", "linear_map_violations", "parameter_values",
           "set_nominal", "train"]
