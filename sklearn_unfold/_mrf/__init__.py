"""Unfolded inference in pairwise binary Markov random fields (paper sec. 3).

Private building blocks of :mod:`sklearn_unfold.unfolded_mrf`, arrays in and
arrays out, in dependency order:

- :mod:`.graphs`: hidden-hidden graphs (chain, complete, image grids, adjacency);
- :mod:`.conversions`: MRF potentials <-> sigmoid parameters (appendix A);
- :mod:`.power_mean`: the stable log-domain power mean behind the messages;
- :mod:`.mean_field`, :mod:`.belief_propagation`: message forward/backward steps;
- :mod:`.network`: the K unfolded layers, forward and backward;
- :mod:`.optimizer`, :mod:`.training`: the loss, Adam, and the training loop.
"""

from .graphs import Graph, make_graph
from .network import NetworkSpec, backward, forward
from .training import fit_network, init_params, loss_and_grad, predict_log_odds

__all__ = [
    "Graph",
    "NetworkSpec",
    "backward",
    "fit_network",
    "forward",
    "init_params",
    "loss_and_grad",
    "make_graph",
    "predict_log_odds",
]
