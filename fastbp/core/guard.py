"""The divergence guard: once per epoch, check that the cost ``C`` and every ``W^l``, ``b^l`` are
finite, and keep a copy of the last parameters that were.

The check costs one reduction per parameter array and the copy one pass over the parameters, once
per epoch (an epoch touches every parameter ``2N/m`` times), so the hot loop pays nothing. The
copy also lets an interrupted epoch give the parameters back
(:func:`fastbp.model.driver.run_epochs`). On a non-finite epoch the network gets back the
parameters of its last finite epoch and :class:`~fastbp.errors.TrainingDiverged` says which
epoch and which layer went wrong, or, with ``on_diverge="continue"``, a warning says so and
training goes on with the non-finite values.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

from ..errors import ConfigError, TrainingDiverged
from .ops import Array, Ops

ON_DIVERGE = ("raise", "continue")
SYMBOLS = {"eta": "η", "lmbda": "λ", "l1": "λ₁", "mu": "μ"}
"""The terms of a step (``v ← μv − η∇C − (ηλ/n)W − (ηλ₁/n) sgn W``) and their symbols."""
API_NAMES = {"eta": "eta", "lmbda": "lmbda", "l1": "l1", "mu": "momentum",
             "dtype": "dtype='float32'", "continue": "on_diverge='continue' to go on anyway"}
"""How a divergence message names each fix: ``train``'s arguments (the command line passes
its own option names to ``TrainingDiverged.message_for``)."""


class DivergenceWarning(RuntimeWarning):
    """Training produced NaN or inf and went on because ``on_diverge="continue"``."""


def check_on_diverge(value: object) -> str:
    """``"raise"`` or ``"continue"``, or ``ConfigError``."""
    if value not in ON_DIVERGE:
        raise ConfigError(f"on_diverge must be one of {ON_DIVERGE}, got {value!r}")
    return str(value)


def first_nonfinite(backend: Ops, weights: Sequence[Array],
                    biases: Sequence[Array]) -> tuple[int, str] | None:
    """``(layer, "weights"|"biases")`` of the first parameter holding NaN or inf, or ``None``.

    Layers are numbered as in the book: ``weights[0]`` is ``W^2`` (layer 1 is the input).
    """
    for l, (w, b) in enumerate(zip(weights, biases)):
        if not backend.all_finite(w):
            return l + 2, "weights"
        if not backend.all_finite(b):
            return l + 2, "biases"
    return None


class DivergenceGuard:
    """Keeps a device copy of the last finite parameters; :meth:`check` runs after each epoch."""

    def __init__(self, backend: Ops, weights: Sequence[Array], biases: Sequence[Array], *,
                 on_diverge: str = "raise", eta: float | None = None,
                 first_epoch: int = 0, state: Sequence[Array] = (),
                 terms: dict[str, float] | None = None) -> None:
        """``state``: more arrays (momentum velocities) kept and given back with the
        parameters; ``terms``: the step's ``eta``, ``lmbda``, ``l1``, ``mu`` as they are, for
        the message (``eta`` alone is the older form)."""
        self.backend, self.weights, self.biases = backend, weights, biases
        self.state = list(state)
        self.on_diverge = check_on_diverge(on_diverge)
        self.terms = dict(terms or {})
        if eta is not None:
            self.terms["eta"] = eta
        self.last_finite: int | None = first_epoch - 1 if first_epoch > 0 else None
        self.warned = False
        # The parameters of the last finished epoch (with "raise", the last finite one too):
        # what a diverged, interrupted or failed epoch gives back (see restore).
        self._saved = [backend.empty(tuple(a.shape)) for a in self._arrays()]
        self._snapshot()

    @property
    def eta(self) -> float | None:
        """The step's rate ``η`` (a schedule changes it between epochs)."""
        return self.terms.get("eta")

    @eta.setter
    def eta(self, value: float | None) -> None:
        self.terms["eta"] = value  # type: ignore[assignment]

    def _arrays(self) -> list[Array]:
        return [*self.weights, *self.biases, *self.state]

    def _snapshot(self) -> None:
        for dst, src in zip(self._saved, self._arrays()):
            self.backend.copy_into(dst, src)

    def restore(self) -> None:
        """Put the parameters of the last finished epoch back into the network's arrays (in
        place); with ``on_diverge="raise"`` they are the last finite ones."""
        for dst, src in zip(self._arrays(), self._saved):
            self.backend.copy_into(dst, src)

    def keep(self) -> None:
        """Take the parameters now as those of the last finished epoch."""
        self._snapshot()

    def check(self, epoch: int, cost: float, *, keep: bool = True) -> None:
        """After ``epoch``: if ``cost`` and the parameters are finite, note it (and, with
        ``keep``, :meth:`keep` them), else act. ``keep=False`` leaves the copy to the caller."""
        bad = first_nonfinite(self.backend, self.weights, self.biases)
        if bad is None and math.isfinite(cost):
            if keep:
                self._snapshot()
            self.last_finite = epoch
            return
        message = self._message(epoch, cost, bad)
        if self.on_diverge == "continue":
            if keep:
                self._snapshot()  # the epoch counts as finished
            if not self.warned:
                warnings.warn(message, DivergenceWarning, stacklevel=3)
                self.warned = True
            return
        self.restore()
        err = TrainingDiverged(message)
        err.epoch, err.cost = epoch, cost
        err.layer, err.parameter = bad if bad is not None else (None, "cost")
        err.last_finite_epoch = self.last_finite
        err.terms = {k: v for k, v in self.terms.items() if v is not None}
        terms = dict(self.terms)
        err.message_for = lambda names: self._message(epoch, cost, bad, names, terms)
        raise err

    def _message(self, epoch: int, cost: float, bad: tuple[int, str] | None,
                 names: Mapping[str, str] | None = None,
                 terms: Mapping[str, float | None] | None = None) -> str:
        """The message: where it went wrong, what the network keeps, the step's terms as
        they are, and the fixes under ``names`` (default :data:`API_NAMES`)."""
        dtype = self.backend.dtype
        if bad is not None:
            layer, what = bad
            symbol = "W" if what == "weights" else "b"
            where = (f"the {what} of layer {layer} ({symbol}^{layer}, {what}[{layer - 2}]) "
                     f"hold NaN or inf (epoch cost {cost:g})")
        else:
            where = f"the epoch's cost is {cost} while the parameters are finite"
            if dtype == "float16":
                where += " (the cost sum overflows float16, whose largest value is 65504)"
        if self.on_diverge == "continue":
            kept = "training goes on (on_diverge='continue')"
        elif self.last_finite is None:
            kept = "the network keeps the parameters it had before training"
        else:
            kept = (f"the network keeps the parameters of epoch {self.last_finite}, "
                    "the last finite one")
        terms = self.terms if terms is None else terms
        shown = [f"{SYMBOLS[k]} = {v:g}" for k in SYMBOLS if (v := terms.get(k)) is not None]
        step = f" The step's terms: {', '.join(shown)}." if shown else ""
        names = API_NAMES if names is None else names
        fixes = [f"a smaller {names[k]} (it is {v:g})" for k in SYMBOLS
                 if (v := terms.get(k)) and k in names]  # only the terms in the step (non-zero)
        if dtype == "float16" and "dtype" in names:
            fixes.append(names["dtype"])
        if self.on_diverge == "raise" and "continue" in names:
            fixes.append(names["continue"])
        return (f"training diverged in epoch {epoch} ({dtype}): {where}; {kept}.{step}"
                + (f" Try {', or '.join(fixes)}." if fixes else ""))
