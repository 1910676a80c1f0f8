"""AMICI's simulation logger, quieted when an object that simulates is created (not on import).

AMICI sets ``amici.sim.sundials`` to DEBUG itself, so every failed integration of a rescue
retry or a start-point draw prints a traceback-sized record. Objects that simulate call
`quiet_amici_simulations` when they are constructed; a level the user set is kept.
`held_simulation_records` holds back the records of an attempt that may be repeated (the
step-capped first adjoint attempt), so a failure that is then repaired prints nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

_NAME = "amici.sim.sundials"
#: The logger AMICI's `run_simulations` reports each condition's solver messages on.
_RECORDS = "amici.sim.sundials._swig_wrappers"


def quiet_amici_simulations() -> None:
    """Raise AMICI's simulation logger to WARNING unless it has been changed from AMICI's
    own default (DEBUG) or from unset."""
    logger = logging.getLogger(_NAME)
    if logger.level in (logging.NOTSET, logging.DEBUG):
        logger.setLevel(logging.WARNING)


@contextlib.contextmanager
def held_simulation_records() -> Iterator[list[logging.LogRecord]]:
    """Within the block, AMICI's per-condition simulation records are not emitted but
    collected in the yielded list; `release_records` emits them afterwards."""
    logger = logging.getLogger(_RECORDS)
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    logger.addFilter(hold)
    try:
        yield held
    finally:
        logger.removeFilter(hold)


def release_records(records: list[logging.LogRecord]) -> None:
    """Emit records held by `held_simulation_records` (to the handlers they were meant for)."""
    for record in records:
        logging.getLogger(record.name).handle(record)
