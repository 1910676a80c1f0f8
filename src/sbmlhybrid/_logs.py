"""AMICI's simulation logger, quieted when an object that simulates is created (not on import).

AMICI sets ``amici.sim.sundials`` to DEBUG itself, so every failed integration of a rescue
retry or a start-point draw prints a traceback-sized record. Objects that simulate call
`quiet_amici_simulations` when they are constructed; a level the user set is kept.
"""

from __future__ import annotations

import logging

_NAME = "amici.sim.sundials"


def quiet_amici_simulations() -> None:
    """Raise AMICI's simulation logger to WARNING unless it has been changed from AMICI's
    own default (DEBUG) or from unset."""
    logger = logging.getLogger(_NAME)
    if logger.level in (logging.NOTSET, logging.DEBUG):
        logger.setLevel(logging.WARNING)
