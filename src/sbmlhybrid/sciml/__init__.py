"""PEtab SciML: neural networks as torch modules, whole hybrid problems.

- `nn`: build a `torch.nn.Module` (`SciMLNet`) from a network YAML (layers + forward graph).
- `hdf5`: read/write PEtab SciML array files (parameters, inputs, outputs).
- `export`: write a torch module back to network YAML + parameter HDF5.
- `problem`: locate a problem's networks (both YAML key spellings) and initialise their
  nominal parameters (and bounds) from array files and the parameter table.
- `importer`: a whole problem YAML -> `SciMLProblem` (`sciml_problem`; reached through the
  one front door, `sbmlhybrid.load_problem`); `mapping` reads and checks the mapping table,
  `inputs` what feeds a network input (numbers, math expressions, array files), `dynamic`
  the `NetworkTerm` of a network evaluated during simulation.
- `objective`: `SciMLObjective`, the objective protocol over mechanistic and network
  parameters (`sbmlhybrid.create_objective`); `fitting`: its pyPESTO problem (priors, start
  points).
- `problem_export`: `hybridize()` inputs written as a PEtab SciML problem.

Everything here is hand-written on top of torch, h5py and PyYAML; no library builds torch
modules from PEtab SciML YAML.
"""

from sbmlhybrid.sciml.export import export_network, network_spec_of, write_network_yaml
from sbmlhybrid.sciml.hdf5 import (
    load_parameters,
    network_arrays,
    read_inputs,
    read_outputs,
    read_parameters,
    write_inputs,
    write_outputs,
    write_parameters,
)
from sbmlhybrid.sciml.nn import NetworkSpec, SciMLNet, build_network, read_network_yaml
from sbmlhybrid.sciml.objective import SciMLEvaluation, SciMLObjective
from sbmlhybrid.sciml.problem import (
    array_files,
    build_problem_networks,
    find_networks,
    find_sciml_section,
    initialize_networks,
)
from sbmlhybrid.sciml.sciml_problem import SciMLProblem

__all__ = [
    "NetworkSpec",
    "SciMLEvaluation",
    "SciMLNet",
    "SciMLObjective",
    "SciMLProblem",
    "array_files",
    "build_network",
    "build_problem_networks",
    "export_network",
    "find_networks",
    "find_sciml_section",
    "initialize_networks",
    "load_parameters",
    "network_arrays",
    "network_spec_of",
    "read_inputs",
    "read_network_yaml",
    "read_outputs",
    "read_parameters",
    "write_inputs",
    "write_network_yaml",
    "write_outputs",
    "write_parameters",
]
