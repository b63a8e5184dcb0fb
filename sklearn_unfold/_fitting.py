"""What every estimator's fit shares: transactions, interrupts, convergence warnings.

A fit is a transaction: :func:`transactional_fit` snapshots the estimator's
``__dict__``; if anything escapes the fit (an exception found late, a
``KeyboardInterrupt``, an interrupt turned into an error), the snapshot is
restored, so the estimator is exactly the previous model. A fit that
completes replaces the previous model as a whole: with ``reset=True`` the
fitted state of an earlier fit (every attribute whose name ends with ``_``,
private fitted state included, e.g. ``_spec_``) is removed before the new
one starts, so no attribute of the old model survives next to the new ones.

An iterative solver that can stop cleanly runs its loop through
:func:`run_interruptible`: Ctrl-C then ends the loop, the solver returns the
state after its last complete update and :class:`FitInterruptedWarning` says
so (one mechanism, one message for every estimator).
"""

import functools
import warnings
from numbers import Integral

from sklearn.exceptions import ConvergenceWarning

from ._compat import Interval
from .exceptions import FitInterruptedWarning

def _fitted_state(estimator):
    """Names of the instance attributes a fit sets: those ending with ``_``.

    scikit-learn's convention for public fitted attributes (``bases_``),
    extended here to private fitted state (``_spec_``): everything else on
    the instance (parameters, scikit-learn's own bookkeeping such as
    ``_sklearn_output_config`` or its callback context) is left alone, and
    so is a parameter whose name ends with ``_`` (``UnfoldedBP(lambda_=...)``).
    """
    params = estimator.get_params(deep=False)
    return [
        name for name in vars(estimator) if name.endswith("_") and not name.startswith("__") and name not in params
    ]


def transactional_fit(method=None, *, reset=True):
    """Make a fitting method all-or-nothing.

    Parameters
    ----------
    method : callable
        ``fit(self, ...)`` or ``partial_fit(self, ...)``.
    reset : bool, default=True
        Remove the fitted state of an earlier fit before running (``fit``);
        ``partial_fit`` builds on it and uses ``reset=False``.
    """
    if method is None:
        return functools.partial(transactional_fit, reset=reset)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        before = dict(vars(self))
        try:
            if reset:
                for name in _fitted_state(self):
                    delattr(self, name)
            return method(self, *args, **kwargs)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise

    return wrapper


def warn_interrupted(name, n_done, what="update"):
    """The one warning of a fit stopped cleanly by ``KeyboardInterrupt``."""
    warnings.warn(
        f"{name}: fit interrupted by the user (KeyboardInterrupt); keeping the parameters after "
        f"{n_done} completed {what}(s).",
        FitInterruptedWarning,
        stacklevel=4,
    )


def run_interruptible(loop, n_done, *, name, stop_on_interrupt, what="update"):
    """Run ``loop()``; on Ctrl-C either propagate it or warn and return normally.

    ``n_done()`` tells how many updates the loop completed (it keeps its state
    where the caller can read it). Before the first completed update there is
    nothing to keep, so the interrupt always propagates.

    Returns
    -------
    interrupted : bool
    """
    try:
        loop()
    except KeyboardInterrupt:
        if not stop_on_interrupt or n_done() < 1:
            raise
        warn_interrupted(name, n_done(), what)
        return True
    return False


def warn_not_converged(name, max_iter, what="max_iter"):
    """The one ConvergenceWarning of an iterative fit that used all its iterations."""
    warnings.warn(
        f"{name}: maximum number of iterations {max_iter} reached before convergence; increase "
        f"{what} to improve convergence.",
        ConvergenceWarning,
        stacklevel=5,
    )


# ``n_jobs`` as scikit-learn means it: None, or a non-zero int. Validated with
# the other parameters, before fit changes anything (joblib would only refuse
# 0 deep inside the fit).
N_JOBS_CONSTRAINT = [Interval(Integral, None, -1, closed="right"), Interval(Integral, 1, None, closed="left"), None]
