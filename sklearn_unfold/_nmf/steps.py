"""The one safeguarded step of every multiplicative solver here.

Multiplicative basis updates (normalization-aware sparse NMF, block-Hankel
generators, multiplicative back-propagation, eq. 38) are heuristics without
a descent guarantee. Each solver proposes ``W * ratio ** step``; the
proposal is kept only if the objective did not increase, otherwise the
exponent ``step`` is halved and the proposal retried from the same point.
"""


def halving_step(propose, reference, *, step=1.0, max_halvings=10):
    """First proposal, halving the exponent, whose objective is at most ``reference``.

    Parameters
    ----------
    propose : callable
        ``propose(step) -> (candidate, objective)``.
    reference : float
        Objective at the current point.
    step : float, default=1.0
        First exponent tried.
    max_halvings : int, default=10
        Proposals tried after the first, each with half the previous step.

    Returns
    -------
    candidate, objective, step
        The accepted proposal, its objective and exponent; ``(None, reference,
        0.0)`` when none of the ``max_halvings + 1`` proposals helped.
    """
    for _ in range(max_halvings + 1):
        candidate, objective = propose(step)
        # ``<=`` is False for NaN: a proposal that broke the numerics is refused.
        if objective <= reference:
            return candidate, objective, step
        step *= 0.5
    return None, reference, 0.0
