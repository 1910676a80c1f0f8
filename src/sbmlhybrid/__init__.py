"""sbmlhybrid: SBML/PEtab models compiled with AMICI, fitted with pyPESTO, augmented with torch."""

__version__ = "0.1.0"
