"""Transfer learning with mechanistic priors (pretrain -> freeze -> correct).

Entry points: `fit_mechanistic`, `mechanistic_layer`, `MechanisticTransferModel`, `train`,
`train_network`; `load_outcomes` reads in vivo outcome tables.
"""

from sbmlhybrid.transfer.data import OutcomeData, load_outcomes
from sbmlhybrid.transfer.mechanistic import (
    MechanisticFit,
    MechanisticTransferModel,
    NetworkBaseline,
    fit_mechanistic,
    mechanistic_layer,
    train,
    train_network,
)

__all__ = ["MechanisticFit", "MechanisticTransferModel", "NetworkBaseline", "OutcomeData",
           "fit_mechanistic", "load_outcomes", "mechanistic_layer", "train", "train_network"]
