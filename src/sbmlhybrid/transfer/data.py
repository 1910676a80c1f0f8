"""In vivo outcome tables for transfer learning (hand-written, pandas + torch).

A TSV with one row per sample: context/feature columns, columns (or constants) for the
model's fixed parameters, an outcome column and optionally a ``split`` column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sbmlhybrid.errors import InputError, Issue


@dataclass
class OutcomeData:
    """Samples of an in vivo data set.

    Attributes:
        features: Context features, shape (n, n_features), standardized if asked.
        fixed: Fixed model parameters per sample, shape (n, n_fixed), layer order.
        target: Outcome, shape (n, 1).
        split: Split label per sample ("train"/"test"), shape (n,).
    """

    features: torch.Tensor
    fixed: np.ndarray
    target: torch.Tensor
    split: np.ndarray

    def subset(self, idx: Sequence[int] | np.ndarray) -> OutcomeData:
        idx = np.asarray(idx, dtype=int)
        t = torch.as_tensor(idx)
        return OutcomeData(self.features[t], self.fixed[idx], self.target[t], self.split[idx])

    def standardized(self, reference: OutcomeData) -> OutcomeData:
        """Features z-scored with the mean/std of `reference` (e.g. the training set)."""
        mu = reference.features.mean(0)
        sd = reference.features.std(0) if len(reference.features) > 1 else torch.ones_like(mu)
        sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
        return OutcomeData((self.features - mu) / sd, self.fixed, self.target, self.split)

    def __len__(self) -> int:
        return len(self.target)


def load_outcomes(path: str | Path, features: Sequence[str],
                  fixed: Sequence[str], constants: Mapping[str, float] | None = None,
                  outcome: str = "outcome") -> OutcomeData:
    """Read an outcome TSV.

    Args:
        path: The TSV file.
        features: Feature columns (in this order).
        fixed: The layer's fixed parameter ids, in layer order; each is a column of the table
            or a key of `constants`.
        constants: Values of fixed parameters that are the same for every sample.
        outcome: The outcome column.
    """
    df = pd.read_csv(path, sep="\t")
    constants = dict(constants or {})
    missing = [c for c in [*features, outcome] if c not in df] + \
        [k for k in fixed if k not in df and k not in constants]
    if missing:
        raise InputError(Issue(f"missing columns {missing}", str(path)))
    fx = np.column_stack([df[k].to_numpy(float) if k in df else np.full(len(df), constants[k])
                          for k in fixed])
    split = df["split"].to_numpy(str) if "split" in df else np.full(len(df), "train")
    return OutcomeData(torch.tensor(df[list(features)].to_numpy(float)), fx,
                       torch.tensor(df[outcome].to_numpy(float)).reshape(-1, 1), split)
