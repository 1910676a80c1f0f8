"""Transfer-learned culture-medium predictor.

Modules (hand-written unless noted; reused libraries named in each module):
    estimator   sklearn-compatible deep-ensemble MLP with pretrain/transfer (torch, sklearn)
    strategies  transfer strategies (head, lp-ft, staged, full, surgical, scratch)
    nets        vectorised ensemble MLP and masked early-stopped training (torch)
    modelfile   saving/loading models without pickle (JSON metadata + torch tensors)
    container   the zip container of model and campaign files, atomic writes
    candidates  search space, candidate generation, constraints, acquisition, batch selection
    campaign    ask/tell campaign with atomic on-disk state
    synthetic   synthetic CHO medium benchmark (components -> CHO kinetics -> outcomes)
    cho_simulator  outcomes of formulations through the compiled AMICI CHO fed-batch model
    datasets    the real CFPS transfer pair and its explicit column-name mapping
    tables      CSV/Excel reading and validation
    metrics     RMSE, MAPE, Spearman, top-10 % recall, interval coverage
"""

from sbmlhybrid.media.campaign import Campaign, propose
from sbmlhybrid.media.candidates import (
    LinearConstraint,
    SearchSpace,
    acquisition,
    constraints_from_table,
    generate_candidates,
    score_candidates,
    select_batch,
)
from sbmlhybrid.media.cho_simulator import AmiciCHOSimulator
from sbmlhybrid.media.estimator import STRATEGIES, SourceSnapshot, TransferMLPRegressor
from sbmlhybrid.media.modelfile import load_model, save_model
from sbmlhybrid.media.synthetic import SyntheticMediumBenchmark

__all__ = [
    "STRATEGIES", "Campaign", "LinearConstraint", "SearchSpace", "SourceSnapshot",
    "SyntheticMediumBenchmark", "TransferMLPRegressor", "acquisition", "constraints_from_table",
    "generate_candidates", "propose", "score_candidates", "select_batch", "AmiciCHOSimulator",
    "load_model", "save_model",
]
