"""Loader of the real cell-free transfer pair with an explicit column-name mapping.

Hand-written (pandas). The source (Borkowski et al. CFPS data, 1,017 rows, 11
components) and the target (METIS lysate data, 240 rows, 15 components) spell
the same components differently; ``CFPS_COLUMN_MAP`` maps every source column
to its target name. Target-only components (DTT, PEG, DNA) are new inputs for
the transfer; HEPES is constant (50 mM) in the target, carries no information
and is dropped (the estimator would otherwise see a zero-range new column).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sbmlhybrid.errors import InputError, Issue

#: source (borkowski_cfps.csv) column -> target (metis_lysate.csv) column
CFPS_COLUMN_MAP: dict[str, str] = {
    "nad": "NAD",
    "folinic_acid": "folinic_acid",
    "coa": "CoA",
    "nucleo_mix": "NTP",
    "spermidin": "spermidine",
    "pga": "3-PGA",
    "aa": "amino_acids",
    "trna": "tRNA_mix",
    "mg_gluta": "Mg_Glutamate",
    "camp": "cAMP",
    "K_gluta": "K_Glutamate",
}
#: target columns that are components but absent from the source
CFPS_TARGET_ONLY = ("DTT", "PEG", "DNA")
#: target columns dropped: constant in the target data
CFPS_DROPPED = ("HEPES",)
OUTCOME = "yield"


def load_cfps_pair(shared: str | Path) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """Load (X_src (1017, 11), y_src, X_tgt (240, 14), y_tgt) with target spellings.

    Args:
        shared: Folder holding ``media_datasets/borkowski_cfps.csv`` and
            ``media_datasets/metis_lysate.csv`` (the repository's ``../shared``).

    Returns:
        Source and target component tables (columns named as in the target) and
        yields (relative protein yield, unitless).
    """
    folder = Path(shared) / "media_datasets"
    src = pd.read_csv(folder / "borkowski_cfps.csv")
    tgt = pd.read_csv(folder / "metis_lysate.csv")
    issues = [Issue("expected column is missing", file=str(folder / "borkowski_cfps.csv"),
                    column=c) for c in [*CFPS_COLUMN_MAP, OUTCOME] if c not in src.columns]
    tgt_cols = [*CFPS_COLUMN_MAP.values(), *CFPS_TARGET_ONLY, OUTCOME]
    issues += [Issue("expected column is missing", file=str(folder / "metis_lysate.csv"),
                     column=c) for c in tgt_cols if c not in tgt.columns]
    if issues:
        raise InputError(issues, header="Invalid CFPS data")
    x_src = src[list(CFPS_COLUMN_MAP)].rename(columns=CFPS_COLUMN_MAP).astype(float)
    x_tgt = tgt[[*CFPS_COLUMN_MAP.values(), *CFPS_TARGET_ONLY]].astype(float)
    return (x_src, src[OUTCOME].to_numpy(float), x_tgt, tgt[OUTCOME].to_numpy(float))
