"""Differentiable PyTorch layers over compiled AMICI models and small compositions of them.

Entry points: `layer_from_problem` / `layer_from_objective` (PEtab), `layer_from_sbml`
(bare SBML + input ids) -> `SimulatorLayer` (observables); `ObjectiveLayer` /
`objective_layer` (any object of the objective protocol -> its negative log-likelihood);
`ParameterNet`, `ObservableNet`, `mlp`.
"""

from sbmlhybrid.layers.build import (
    layer_from_objective,
    layer_from_problem,
    layer_from_sbml,
    sbml_problem,
)
from sbmlhybrid.layers.nets import ObservableNet, ParameterNet, mlp
from sbmlhybrid.layers.objective_layer import ObjectiveLayer, objective_layer
from sbmlhybrid.layers.simulator import (
    ADJOINT_MIN_INPUTS,
    AmiciBatchSimulator,
    ConditionTable,
    SimulatorLayer,
)

__all__ = ["ADJOINT_MIN_INPUTS", "AmiciBatchSimulator", "ConditionTable", "ObjectiveLayer",
           "ObservableNet", "ParameterNet", "SimulatorLayer", "layer_from_objective",
           "layer_from_problem", "layer_from_sbml", "mlp", "objective_layer", "sbml_problem"]
