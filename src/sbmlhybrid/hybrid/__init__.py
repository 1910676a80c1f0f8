"""Hybrid models: torch modules for unknown kinetics compiled into the AMICI model.

Entry point: `hybridize(problem, [NetworkTerm(...)]) -> HybridProblem` (a `Problem`, so the
foundation's `create_objective`, `fit` and optimizers apply). `HybridProblem.hybrid` is the
`HybridModel`: weight ids, loading trained weights back into the torch modules
(`load_weights(parameter_values(objective, x))`), the learned term in torch (`term_values`)
and `apply` to held-out data of the same model (no recompile).
"""

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

__all__ = ["ACTIVATIONS", "HYBRID_CODEGEN", "KINDS", "OUTPUT_TRANSFORMS", "HybridModel",
           "HybridProblem", "NetworkTerm", "check_module", "compile_hybrid",
           "create_hybrid_objective", "hybridize", "parameter_values", "set_nominal"]
