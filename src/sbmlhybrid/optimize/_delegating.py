"""Base of the optimizer wrappers (`CountedOptimizer`, `RescuedOptimizer`): a pyPESTO
`Optimizer` that holds another and passes every attribute and query through to it; the
subclass overrides `minimize`. Written here because pyPESTO has no wrapping optimizer."""

from __future__ import annotations

from typing import Any

import numpy as np
from pypesto.optimize import Optimizer


class DelegatingOptimizer(Optimizer):
    """An optimizer around `inner`; its repr is the inner's (checkpoints compare reprs).

    Args:
        inner: Any pyPESTO optimizer.
    """

    def __init__(self, inner: Optimizer):
        super().__init__()
        self.inner = inner

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def is_least_squares(self) -> bool:
        return self.inner.is_least_squares()

    def check_x0_support(self, x_guesses: np.ndarray | None = None) -> bool:
        return self.inner.check_x0_support(x_guesses)
