"""Warnings and errors raised by sklearn_unfold (besides scikit-learn's own)."""

__all__ = ["FitInterruptedWarning"]


class FitInterruptedWarning(UserWarning):
    """A fit was stopped by ``KeyboardInterrupt`` and kept its last complete update.

    Iterative fits (e.g. :class:`~sklearn_unfold.DeepNMF`'s back-propagation)
    catch Ctrl-C, keep the parameters of the last completed update and warn
    with this category, as scikit-learn's ``MLPClassifier`` does. A program
    that must not go on with a truncated model turns it into an error::

        with warnings.catch_warnings():
            warnings.simplefilter("error", FitInterruptedWarning)
            model.fit(X, y)       # raises FitInterruptedWarning on Ctrl-C

    and the estimator is then left exactly as it was before the call.
    """
