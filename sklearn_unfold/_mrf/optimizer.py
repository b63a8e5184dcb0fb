"""Adam on a dict of parameter arrays (Kingma & Ba, 2015)."""

import numpy as np


class Adam:
    """Adam optimizer updating a dict of arrays in place.

    Parameters
    ----------
    params : dict of ndarray
        Arrays to optimize; only ``keys`` are updated.
    keys : iterable of str
        Names of the trained arrays.
    learning_rate : float
    beta1, beta2 : float
        Decay rates of the first and second moment estimates.
    epsilon : float or None
        Added to the root of the second moment; ``None`` scales it with the
        parameters' dtype (``sqrt(eps)``: 1.5e-8 for float64, 3.5e-4 for float32).
    """

    def __init__(self, params, keys, learning_rate, beta1=0.9, beta2=0.999, epsilon=None):
        self.keys = list(keys)
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        dtype = next(iter(params.values())).dtype
        self.epsilon = float(np.sqrt(np.finfo(dtype).eps)) if epsilon is None else epsilon
        self.m = {key: np.zeros_like(params[key]) for key in self.keys}
        self.v = {key: np.zeros_like(params[key]) for key in self.keys}
        self.t = 0

    def step(self, params, grads):
        """One update ``params[key] -= lr * m_hat / (sqrt(v_hat) + eps)``."""
        self.t += 1
        lr = self.learning_rate * np.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        for key in self.keys:
            g = grads[key]
            self.m[key] *= self.beta1
            self.m[key] += (1 - self.beta1) * g
            self.v[key] *= self.beta2
            self.v[key] += (1 - self.beta2) * g * g
            params[key] -= (lr * self.m[key] / (np.sqrt(self.v[key]) + self.epsilon)).astype(
                params[key].dtype, copy=False
            )
