"""The paper's DNN baseline (sec. 5.2) in PyTorch: a mask network trained so that mask x mixture fits the speech.

Private helper of ``benchmarks/speech_enhancement.py`` (files starting with ``_`` are not run as
scripts); it needs ``torch``, which the library itself never imports. :func:`torch_missing` tells
whether it can be used.

The network maps the standardized log-magnitude context stack ``x_t`` (T frames, as DeepNMF's
input) to a mask ``y_t = sigmoid(W^K tanh(... tanh(W^1 x_t)))`` over the F frequencies of the
target frame, and is trained on the paper's objective

    E = sum_{f,t} (y_{f,t} m_{f,t} - s_{f,t})^2

(``m`` the mixture's and ``s`` the speech target's last frame), with Adam on shuffled
mini-batches, Gaussian input noise (std 0.1 on the standardized input, as in the paper) and early
stopping on the same objective over held-out training utterances (``groups``).

Reference: J. R. Hershey, J. Le Roux, F. Weninger, "Deep unfolding: model-based inspiration of
novel deep architectures", 2014, sec. 5.2 and Table 1.
"""

import contextlib
import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data

from sklearn_unfold.metrics import sdr_scorer, target_frames

# Floor added to the magnitudes before the log (their 1st percentile is ~1e-3 on the benchmark's data).
LOG_FLOOR = 1e-6
_ACTIVATIONS = ("tanh", "relu")


def torch_missing():
    """None when torch can be imported, else a one-line reason."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        return f"torch cannot be imported ({exc}); pip install \"sklearn_unfold[bench]\""
    return None


def _torch():
    import torch

    return torch


@contextlib.contextmanager
def _torch_threads(n_threads):
    """torch's intra-op threads pinned to ``n_threads`` (None: as they are) for the block."""
    torch = _torch()
    previous = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_network(n_inputs, hidden_layer_sizes, n_outputs, activation="tanh"):
    """``sigmoid(W^K act(... act(W^1 x)))`` as a torch ``Sequential`` (affine layers with biases)."""
    torch = _torch()
    nonlinearity = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    layers, width = [], n_inputs
    for size in hidden_layer_sizes:
        layers += [torch.nn.Linear(width, size), nonlinearity()]
        width = size
    layers += [torch.nn.Linear(width, n_outputs), torch.nn.Sigmoid()]
    return torch.nn.Sequential(*layers)


def mask_loss(mask, mixture, speech):
    """The paper's objective ``sum (mask * m - s)^2`` (sec. 5.2), summed over frames and frequencies."""
    return ((mask * mixture - speech) ** 2).sum()


class MaskDNN(RegressorMixin, BaseEstimator):
    """Feed-forward mask network of the paper's sec. 5.2, as a scikit-learn regressor.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(1024, 1024)
        Widths of the hidden layers (the paper's Table 1: 3x256 ... 2x1536).
    n_context : int, default=9
        Frames T stacked in each row of X, the target frame last.
    activation : {"tanh", "relu"}, default="tanh"
        Hidden nonlinearity (the paper: tanh).
    learning_rate : float, default=1e-3
        Adam's step size.
    batch_size : int, default=256
        Frames per mini-batch.
    max_epochs : int, default=200
        Passes over the training frames at most.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training utterances (``groups`` in fit; frames when
        None), stop when their objective has not improved by ``tol`` (relative) for
        ``n_iter_no_change`` epochs and keep the network of the best epoch.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    input_noise : float, default=0.1
        Standard deviation of the Gaussian noise added to the standardized input while training
        (the paper: 0.1).
    n_threads : int or None, default=None
        torch intra-op threads during fit and predict (None: torch's setting).
    random_state : int, default=0
        Seeds the split, the initialization, the mini-batch order and the input noise: an int with
        pinned ``n_threads`` gives the same network on every run.
    verbose : int, default=0

    Attributes
    ----------
    network_ : torch.nn.Sequential
        The trained network (of the best epoch with early stopping).
    input_mean_, input_scale_ : ndarray of shape (n_features_in_,)
        Statistics of the log-magnitude inputs of the training frames used for the standardization.
    n_sources_ : int
        Sources in y (2: predict returns the speech estimate and the residual as the noise).
    n_frequencies_ : int
    n_iter_ : int
        Epochs run.
    best_epoch_ : int
        Epoch (1-based) whose network is kept.
    loss_curve_ : list of float
        Training objective per frame after each epoch (with input noise, as trained).
    validation_loss_curve_ : list of float
        Held-out objective per frame after each epoch (empty without early stopping).
    n_params_ : int
        Number of weights and biases.
    fit_seconds_ : float
    """

    def __init__(
        self,
        hidden_layer_sizes=(1024, 1024),
        *,
        n_context=9,
        activation="tanh",
        learning_rate=1e-3,
        batch_size=256,
        max_epochs=200,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        input_noise=0.1,
        n_threads=None,
        random_state=0,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.n_context = n_context
        self.activation = activation
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.input_noise = input_noise
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- data
    def _check_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=np.float32)
        if X.shape[1] % self.n_context:
            raise ValueError(f"X has {X.shape[1]} columns, not a multiple of n_context={self.n_context}.")
        if np.any(X < 0):
            raise ValueError("X must hold magnitudes (non-negative).")
        return X

    def _standardized(self, X):
        return (np.log(X + LOG_FLOOR) - self.input_mean_) / self.input_scale_

    def _split(self, n_frames, groups):
        """Training and validation rows (all rows and none without early stopping)."""
        rows = np.arange(n_frames)
        if not self.early_stopping:
            return rows, rows[:0]
        if groups is not None:
            splitter = GroupShuffleSplit(n_splits=1, test_size=self.validation_fraction, random_state=self.random_state)
            train, valid = next(splitter.split(rows, groups=np.asarray(groups)))
        else:
            splitter = ShuffleSplit(n_splits=1, test_size=self.validation_fraction, random_state=self.random_state)
            train, valid = next(splitter.split(rows))
        return train, valid

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, groups=None):
        """Train the mask network on context-stacked magnitudes.

        Parameters
        ----------
        X : array-like of shape (n_frames, n_context * n_frequencies)
            Mixture magnitudes, context-stacked, target frame last (DeepNMF's input).
        y : array-like of shape (n_frames, n_sources * n_context * n_frequencies) or (n_frames, n_sources * n_frequencies)
            Source magnitudes (or any training target, e.g. phase-sensitive ones) laid out as for
            DeepNMF, speech first; only the speech target frame is used.
        groups : array-like of shape (n_frames,), default=None
            Utterance of each frame: the early-stopping hold-out takes whole utterances.

        Returns
        -------
        self : object
        """
        torch = _torch()
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}; got {self.activation!r}.")
        start = time.perf_counter()
        X = self._check_X(X, reset=True)
        y = check_array(y, dtype=np.float32, input_name="y")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}.")
        F = X.shape[1] // self.n_context
        n_sources = y.shape[1] // X.shape[1] if y.shape[1] % X.shape[1] == 0 else y.shape[1] // F
        if n_sources not in (1, 2):
            raise ValueError(f"y must hold 1 or 2 sources laid out like X or as target frames; got {y.shape[1]} columns.")
        speech = np.ascontiguousarray(target_frames(y, n_sources, F)[:, :F])
        train, valid = self._split(X.shape[0], groups)
        logs = np.log(X[train] + LOG_FLOOR)
        self.input_mean_ = logs.mean(axis=0)
        self.input_scale_ = logs.std(axis=0) + 1e-3
        del logs
        inputs = torch.from_numpy(np.ascontiguousarray(self._standardized(X), dtype=np.float32))
        mixture = torch.from_numpy(np.ascontiguousarray(X[:, -F:]))
        speech = torch.from_numpy(speech)
        with _torch_threads(self.n_threads):
            torch.manual_seed(self.random_state)
            generator = torch.Generator().manual_seed(self.random_state)
            network = build_network(X.shape[1], self.hidden_layer_sizes, F, self.activation)
            optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
            train_rows = torch.from_numpy(train)
            best, best_state, best_epoch, stall = np.inf, None, 0, 0
            loss_curve, valid_curve = [], []
            for epoch in range(1, self.max_epochs + 1):
                network.train()
                total = 0.0
                order = train_rows[torch.randperm(train_rows.shape[0], generator=generator)]
                for batch in torch.split(order, self.batch_size):
                    x = inputs[batch]
                    if self.input_noise:
                        x = x + self.input_noise * torch.randn(x.shape, generator=generator)
                    # The per-frame mean of E: the paper's sum, on the scale of one frame.
                    loss = mask_loss(network(x), mixture[batch], speech[batch]) / batch.shape[0]
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * batch.shape[0]
                loss_curve.append(total / train.shape[0])
                if valid.shape[0]:
                    value = self._objective(network, inputs, mixture, speech, valid) / valid.shape[0]
                    valid_curve.append(value)
                    if not np.isfinite(best) or value < best - self.tol * abs(best):
                        best, best_epoch, stall = value, epoch, 0
                        best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
                    else:
                        stall += 1
                else:
                    best_epoch = epoch
                if self.verbose:
                    extra = f", validation {valid_curve[-1]:.4g}" if valid_curve else ""
                    print(f"[MaskDNN] epoch {epoch}: training {loss_curve[-1]:.4g}{extra}", flush=True)
                if valid.shape[0] and stall >= self.n_iter_no_change:
                    break
            if best_state is not None:
                network.load_state_dict(best_state)
            network.eval()
        self.network_ = network
        self.n_sources_ = n_sources
        self.n_frequencies_ = F
        self.n_iter_ = epoch
        self.best_epoch_ = best_epoch
        self.loss_curve_ = loss_curve
        self.validation_loss_curve_ = valid_curve
        self.fit_seconds_ = time.perf_counter() - start
        return self

    @staticmethod
    def _objective(network, inputs, mixture, speech, rows, chunk=8192):
        torch = _torch()
        network.eval()
        total = 0.0
        with torch.no_grad():
            for part in np.array_split(rows, max(1, -(-rows.shape[0] // chunk))):
                index = torch.from_numpy(part)
                total += float(mask_loss(network(inputs[index]), mixture[index], speech[index]))
        return total

    # ------------------------------------------------------------ inference
    def predict_mask(self, X, chunk=8192):
        """The mask ``y_t`` in [0, 1] of every frame, shape (n_frames, n_frequencies)."""
        check_is_fitted(self)
        torch = _torch()
        X = self._check_X(X, reset=False)
        masks = []
        with _torch_threads(self.n_threads), torch.no_grad():
            self.network_.eval()
            for start in range(0, X.shape[0], chunk):
                x = torch.from_numpy(np.ascontiguousarray(self._standardized(X[start : start + chunk]), dtype=np.float32))
                masks.append(self.network_(x).numpy())
        return np.concatenate(masks) if masks else np.empty((0, self.n_frequencies_), np.float32)

    def predict(self, X):
        """Speech estimate ``mask * m`` (and, for two sources, the residual ``m - mask * m``).

        Returns
        -------
        y_pred : ndarray of shape (n_frames, n_sources_ * n_frequencies)
            Laid out like DeepNMF's predictions, speech first.
        """
        mask = self.predict_mask(X)
        mixture = np.asarray(X, dtype=np.float32)[:, -self.n_frequencies_ :]
        speech = mask * mixture
        return speech if self.n_sources_ == 1 else np.hstack([speech, mixture - speech])

    def score(self, X, y):
        """Magnitude SDR (dB) of the speech estimate, as DeepNMF's score; greater is better."""
        return sdr_scorer(self, X, y)

    @property
    def n_params_(self):
        check_is_fitted(self)
        return int(sum(p.numel() for p in self.network_.parameters()))


def count_params(n_inputs, hidden_layer_sizes, n_outputs):
    """Weights and biases of the network, without building it (the paper's '# params')."""
    widths = [n_inputs, *hidden_layer_sizes, n_outputs]
    return int(sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:])))


def self_check(seed=0):
    """The torch objective and its gradients against a numpy computation on a small network.

    Forward pass, loss ``sum (mask * m - s)^2`` and back-propagation through the sigmoid output
    and the tanh hidden layers are written out in numpy (float64) and compared with torch's
    autograd. Returns the largest relative difference; raises AssertionError above 1e-6.
    """
    torch = _torch()
    rng = np.random.default_rng(seed)
    n, d, hidden, F = 7, 12, (5, 4), 3
    torch.manual_seed(seed)
    network = build_network(d, hidden, F, "tanh").double()
    x, m = rng.standard_normal((n, d)), rng.random((n, F))
    s = rng.random((n, F)) * m
    loss = mask_loss(network(torch.from_numpy(x)), torch.from_numpy(m), torch.from_numpy(s))
    network.zero_grad()
    loss.backward()
    linears = [layer for layer in network if isinstance(layer, torch.nn.Linear)]
    weights = [layer.weight.detach().numpy() for layer in linears]
    biases = [layer.bias.detach().numpy() for layer in linears]
    # numpy forward pass
    activations = [x]
    for W, b in zip(weights[:-1], biases[:-1]):
        activations.append(np.tanh(activations[-1] @ W.T + b))
    mask = 1.0 / (1.0 + np.exp(-(activations[-1] @ weights[-1].T + biases[-1])))
    residual = mask * m - s
    numpy_loss = np.sum(residual**2)
    # numpy backward pass: dE/dz at the output, then through each tanh layer
    delta = 2.0 * residual * m * mask * (1.0 - mask)
    grads = []
    for k in range(len(weights) - 1, -1, -1):
        grads.append((delta.T @ activations[k], delta.sum(axis=0)))
        if k:
            delta = (delta @ weights[k]) * (1.0 - activations[k] ** 2)
    grads.reverse()
    errors = [abs(loss.item() - numpy_loss) / abs(numpy_loss)]
    for layer, (gW, gb) in zip(linears, grads):
        for torch_grad, numpy_grad in ((layer.weight.grad.numpy(), gW), (layer.bias.grad.numpy(), gb)):
            errors.append(np.max(np.abs(torch_grad - numpy_grad)) / np.max(np.abs(numpy_grad)))
    worst = float(max(errors))
    assert worst < 1e-6, f"torch and numpy disagree on the mask DNN's loss or gradients (relative {worst:.2e})"
    return worst
