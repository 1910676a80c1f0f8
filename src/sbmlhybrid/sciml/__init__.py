"""PEtab SciML neural networks as torch modules.

- `nn`: build a `torch.nn.Module` (`SciMLNet`) from a network YAML (layers + forward graph).
- `hdf5`: read/write PEtab SciML array files (parameters, inputs, outputs).
- `export`: write a torch module back to network YAML + parameter HDF5.
- `problem`: locate a problem's networks (both YAML key spellings) and initialise their
  nominal parameters from array files and the parameter table.
- `conformance`: checks against the PEtab SciML test suite.

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
from sbmlhybrid.sciml.problem import (
    array_files,
    build_problem_networks,
    find_networks,
    initialize_networks,
)

__all__ = [
    "NetworkSpec",
    "SciMLNet",
    "array_files",
    "build_network",
    "build_problem_networks",
    "export_network",
    "find_networks",
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
