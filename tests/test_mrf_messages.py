"""Power mean and message kernels: references in high precision and by formula."""

from decimal import Decimal, getcontext

import numpy as np
import pytest
from scipy.special import expit

from sklearn_unfold._mrf.belief_propagation import bp_message, bp_message_grad
from sklearn_unfold._mrf.mean_field import mf_message, mf_message_grad
from sklearn_unfold._mrf.power_mean import (
    power_mean_g,
    power_mean_g_dd,
    power_mean_g_ddelta,
)

D_VALUES = [-40.0, -12.0, -3.0, -0.3, 0.0, 0.7, 4.0, 15.0, 35.0]
DELTA_VALUES = [-80.0, -3.0, -1.0, -0.2, -1e-3, -1e-6, -1e-12, 0.0, 1e-9, 5e-6,
                3e-3, 0.011, 0.5, 1.0, 7.0, 49.0, 60.0]


def _reference(d, delta):
    """G, dG/dd, dG/ddelta with 60-digit decimals (independent of numpy)."""
    getcontext().prec = 60
    d, delta = Decimal(d), Decimal(delta)

    def softplus(x):
        return (1 + x.exp()).ln()

    def sigmoid(x):
        return 1 / (1 + (-x).exp())

    if delta == 0:
        s = sigmoid(d)
        return s, s * (1 - s), s * (1 - s) / 2
    g = (softplus(d + delta) - softplus(d)) / delta
    dg_dd = (sigmoid(d + delta) - sigmoid(d)) / delta
    dg_ddelta = (sigmoid(d + delta) - g) / delta
    return g, dg_dd, dg_ddelta


def test_power_mean_matches_high_precision_reference():
    d, delta = np.meshgrid(D_VALUES, DELTA_VALUES)
    d, delta = d.ravel(), delta.ravel()
    ref = np.array([[float(v) for v in _reference(a, b)] for a, b in zip(d, delta)])
    got = [power_mean_g(d, delta), power_mean_g_dd(d, delta), power_mean_g_ddelta(d, delta)]
    for k, value in enumerate(got):
        assert np.all(np.isfinite(value))
        # Absolute accuracy near machine precision; relative where it matters.
        np.testing.assert_allclose(value, ref[:, k], rtol=1e-9, atol=1e-15)


def test_power_mean_limits():
    d = np.linspace(-5, 5, 11)
    np.testing.assert_array_equal(power_mean_g(d, 0.0), expit(d))
    # Geometric-mean limit: G -> sigmoid(d) continuously (eq. 57).
    np.testing.assert_allclose(power_mean_g(d, 1e-9), expit(d), atol=1e-9)
    # Max limit (eq. 56, a -> inf): G -> 1 if d > -delta... i.e. (relu(d+delta)-relu(d))/delta.
    big = 1e6
    np.testing.assert_allclose(
        power_mean_g(d, big), (np.maximum(d + big, 0) - np.maximum(d, 0)) / big, atol=1e-6
    )


def test_power_mean_float32():
    d = np.linspace(-20, 20, 41, dtype=np.float32)
    for delta in [np.float32(0), np.float32(1e-4), np.float32(0.3), np.float32(-2.0)]:
        for f in (power_mean_g, power_mean_g_dd, power_mean_g_ddelta):
            out = f(d, delta)
            assert out.dtype == np.float32
            np.testing.assert_allclose(
                out, f(d.astype(np.float64), np.float64(delta)), rtol=2e-3, atol=1e-6
            )


# -- messages against the paper's formulas in the probability domain ------------
def _message_reference(a, eta_j, rho_ij, lam, kappa):
    """Eq. (61) (eq. 22 at lambda = kappa = 1), evaluated literally on 2 states.

    q(h_j) from the belief log-odds, m_{i->j}(h_j) from the reverse message;
    returns log m(1) - log m(0).
    """
    q = np.stack([expit(-eta_j), expit(eta_j)], axis=-1)          # q(h_j)
    m_rev = np.stack([expit(-rho_ij), expit(rho_ij)], axis=-1)    # m_{i->j}(h_j)
    h = np.array([0.0, 1.0])
    out = []
    for h_i in (0.0, 1.0):
        psi = a[..., None] * h_i * h                              # Psi(h_i, h_j)
        s = lam * kappa
        terms = q**kappa * (np.exp(psi) / m_rev) ** s
        out.append(np.log(terms.sum(-1)) / s)
    return out[1] - out[0]


@pytest.mark.parametrize(
    "lam, kappa", [(1.0, 1.0), (0.5, 1.0), (2.0, 1.0), (1.0, 2.5), (0.3, 3.0), (1.7, 0.5)]
)
def test_bp_message_matches_equation_61(lam, kappa):
    rng = np.random.RandomState(0)
    a = rng.randn(6) * 2
    eta = rng.randn(5, 6) * 2
    rho = rng.randn(5, 6)
    expected = _message_reference(np.broadcast_to(a, eta.shape), eta, rho, lam, kappa)
    np.testing.assert_allclose(bp_message(a, eta, rho, lam, kappa), expected, rtol=1e-10, atol=1e-12)


def test_sum_product_message_is_cavity_update():
    # eq. (22): m_{j->i}(h_i) = sum_{h_j} q(h_j)/m_{i->j}(h_j) e^{a h_i h_j};
    # with log-odds, the cavity of j is eta_j - rho_{i->j}.
    rng = np.random.RandomState(1)
    a, eta, rho = rng.randn(4), rng.randn(3, 4), rng.randn(3, 4)
    c = eta - rho
    expected = np.log((1 + np.exp(c + a)) / (1 + np.exp(c)))
    np.testing.assert_allclose(bp_message(a, eta, rho, 1.0), expected, rtol=1e-12)


def test_lambda_to_zero_is_mean_field():
    # eq. (28): lambda -> 0 gives the mean-field message a * mu_j; stable near 0.
    rng = np.random.RandomState(2)
    a, eta, rho = rng.randn(8) * 3, rng.randn(4, 8) * 3, rng.randn(4, 8) * 3
    mf = mf_message(a, eta)
    np.testing.assert_array_equal(bp_message(a, eta, rho, 0.0), mf)
    for lam in [1e-14, 1e-10, 1e-8]:
        np.testing.assert_allclose(bp_message(a, eta, rho, lam), mf, atol=1e-7)
    err = [np.max(np.abs(bp_message(a, eta, rho, lam) - mf)) for lam in (1e-2, 1e-3, 1e-4)]
    assert err[0] > err[1] > err[2]  # converges linearly, no blow-up near 0


def test_kappa_to_infinity_is_max_product():
    # eq. (30): max_{h_j} [cavity(h_j) + a h_i h_j] as a log-ratio.
    rng = np.random.RandomState(3)
    a, eta, rho = rng.randn(6) * 2, rng.randn(5, 6) * 2, rng.randn(5, 6)
    c = eta - rho
    expected = np.maximum(0, c + a) - np.maximum(0, c)
    np.testing.assert_allclose(bp_message(a, eta, rho, 1.0, np.inf), expected, rtol=1e-12)
    np.testing.assert_allclose(bp_message(a, eta, rho, 1.0, 1e8), expected, atol=1e-7)
    np.testing.assert_allclose(
        bp_message(a, eta, rho, 0.6, 1e8), bp_message(a, eta, rho, 0.6, np.inf), atol=1e-7
    )


def _fd(f, x, h=1e-6):
    x = np.array(x, dtype=float)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


@pytest.mark.parametrize(
    "lam, kappa",
    [(lam, kappa) for kappa in (1.0, 2.5) for lam in (0.0, 1e-7, 0.004, 0.5, 1.0, 2.0)]
    + [(lam, np.inf) for lam in (1e-7, 0.004, 0.5, 1.0, 2.0)],
)
def test_bp_message_grad_matches_finite_differences(lam, kappa):
    rng = np.random.RandomState(4)
    a = rng.randn(5) * 1.5
    eta = rng.randn(3, 5) * 2
    rho = rng.randn(3, 5)
    w = rng.randn(3, 5)  # loss = sum(w * r)

    def loss(a_=a, eta_=eta, rho_=rho, lam_=lam):
        return np.sum(w * bp_message(a_, eta_, rho_, lam_, kappa))

    g_a, g_eta, g_rho, g_lam = bp_message_grad(w, a, eta, rho, lam, kappa)
    tol = dict(rtol=1e-5, atol=1e-7)
    # kappa = inf is piecewise linear: a larger step is exact between kinks and
    # avoids the rounding of (relu(u + lam a) - relu(u)) / lam at small lam.
    h = 1e-3 if np.isinf(kappa) else 1e-6
    np.testing.assert_allclose(g_a, _fd(lambda x: loss(a_=x), a, h), **tol)
    np.testing.assert_allclose(g_eta, _fd(lambda x: loss(eta_=x), eta, h), **tol)
    np.testing.assert_allclose(g_rho, _fd(lambda x: loss(rho_=x), rho, h), **tol)
    h = 1e-6 if lam > 1e-3 else 1e-9
    if lam >= h and not (np.isinf(kappa) and lam < 1e-3):
        np.testing.assert_allclose(
            g_lam, _fd(lambda x: loss(lam_=float(x)), lam, h=h), **tol
        )
    assert bp_message_grad(w, a, eta, rho, lam, kappa, need_lambda=False)[3] == 0.0


def test_mf_message_grad_matches_finite_differences():
    rng = np.random.RandomState(5)
    a, eta, w = rng.randn(4), rng.randn(3, 4) * 2, rng.randn(3, 4)
    g_a, g_eta = mf_message_grad(w, a, eta)
    np.testing.assert_allclose(g_a, _fd(lambda x: np.sum(w * mf_message(x, eta)), a), rtol=1e-6)
    np.testing.assert_allclose(
        g_eta, _fd(lambda x: np.sum(w * mf_message(a, x)), eta), rtol=1e-6, atol=1e-9
    )
