"""The unfolded-NMF core: arrays in, arrays out, no estimator in sight.

Private building blocks of :mod:`sklearn_unfold.sparse_nmf`,
:mod:`sklearn_unfold.deep_nmf` and :mod:`sklearn_unfold.pad_nmf`, in
dependency order:

- :mod:`.divergences`: beta-divergences, their derivatives, dtype-aware epsilons;
- :mod:`.scaling`: solving data at extreme scales as the same problem near 1;
- :mod:`.chunks`: frames in chunks (bounded memory, threads, ordered sums);
- :mod:`.steps`: the one safeguarded (step-halving) multiplicative step;
- :mod:`.updates`: sparse NMF (activation and normalization-aware basis updates);
- :mod:`.hankel`: PAD-NMF's block-Hankel structure and its sparse NMF;
- :mod:`.validation`, :mod:`.layout`: input checks, where each source's target frame sits;
- :mod:`.network`: the network spec and the ONE forward pass;
- :mod:`.backward`: gradient parts per layer (eq. 83-87, 98-105);
- :mod:`.trainer`: multiplicative back-propagation (eq. 38).
"""
