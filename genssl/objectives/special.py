"""Log-space special functions: the modified Bessel function I_ν and the vMF normaliser.

The von Mises–Fisher density on the unit sphere S^{d−1} ⊂ R^d is
    f(ẑ; μ, κ) = C_d(κ) exp(κ μᵀẑ),   C_d(κ) = κ^{d/2−1} / ((2π)^{d/2} I_{d/2−1}(κ)).
For large d the Bessel value I_{d/2−1}(κ) underflows double precision (d = 2048, κ = 10 gives
about 10^{−2300}), so everything here is computed as a logarithm and never exponentiated.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, ive

from ._common import check_int, check_positive

# Orders at or above this use the uniform (Debye) expansion; its first omitted term is
# O(ν^{-5}), below 1e-8 relative here. Smaller orders use scipy's scaled Bessel function.
_DEBYE_MIN_ORDER = 30.0
# ive values below this are treated as underflowed and recomputed by the power series.
_IVE_FLOOR = 1e-280


def _debye_polynomials(t: float) -> tuple[float, float, float, float]:
    """u_1..u_4 of the uniform asymptotic expansion of I_ν(νz) (DLMF 10.41.10), t = 1/√(1+z²)."""
    t2 = t * t
    u1 = t * (3.0 - 5.0 * t2) / 24.0
    u2 = t2 * (81.0 - 462.0 * t2 + 385.0 * t2 * t2) / 1152.0
    u3 = t * t2 * (30375.0 - 369603.0 * t2 + 765765.0 * t2**2 - 425425.0 * t2**3) / 414720.0
    u4 = (
        t2
        * t2
        * (4465125.0 - 94121676.0 * t2 + 349922430.0 * t2**2 - 446185740.0 * t2**3 + 185910725.0 * t2**4)
        / 39813120.0
    )
    return u1, u2, u3, u4


def _log_iv_debye(nu: float, x: float) -> float:
    """log I_ν(x) = νη − ½log(2πν) − ¼log(1+z²) + log Σ_k u_k(t)/ν^k with z = x/ν (DLMF 10.41.3)."""
    z = x / nu
    root = math.sqrt(1.0 + z * z)
    eta = root + math.log(z / (1.0 + root))
    u1, u2, u3, u4 = _debye_polynomials(1.0 / root)
    series = 1.0 + u1 / nu + u2 / nu**2 + u3 / nu**3 + u4 / nu**4
    return nu * eta - 0.5 * math.log(2.0 * math.pi * nu) - 0.5 * math.log(root) + math.log(series)


def _log_iv_series(nu: float, x: float) -> float:
    """log I_ν(x) from the power series Σ_k (x/2)^{2k+ν} / (k! Γ(ν+k+1)), summed in log space.

    All terms are positive, so there is no cancellation; the terms peak near k ≈ x/2 and the
    sum is truncated well past the peak.
    """
    terms = int(x + 15.0 * math.sqrt(x) + 50.0)
    k = np.arange(terms, dtype=np.float64)
    log_terms = (2.0 * k + nu) * math.log(x / 2.0) - gammaln(k + 1.0) - gammaln(nu + k + 1.0)
    top = float(log_terms.max())
    return top + math.log(float(np.exp(log_terms - top).sum()))


def log_bessel_iv(nu: float, x: float) -> float:
    """log I_ν(x) for order ν ≥ 0 and argument x > 0, without underflow or overflow.

    Orders ν ≥ 30: uniform asymptotic (Debye) expansion with four correction terms, accurate to
    about 1e-8 relative error in I_ν for every x > 0. Smaller orders: log(ive(ν, x)) + x with
    scipy's exponentially scaled Bessel function, falling back to the log-space power series
    where that underflows (x tiny relative to ν).
    """
    check_positive("nu", nu, allow_zero=True)
    check_positive("x", x)
    nu, x = float(nu), float(x)
    if nu >= _DEBYE_MIN_ORDER:
        return _log_iv_debye(nu, x)
    scaled = float(ive(nu, x))
    if scaled > _IVE_FLOOR and math.isfinite(scaled):
        return math.log(scaled) + x
    return _log_iv_series(nu, x)


def log_vmf_normaliser(dim: int, kappa: float) -> float:
    """log C_d(κ) = (d/2 − 1) log κ − (d/2) log(2π) − log I_{d/2−1}(κ) for the vMF on S^{d−1}.

    ``dim`` is the ambient dimension d ≥ 2 (the embedding size) and ``kappa`` > 0.
    """
    check_int("dim", dim, 2)
    check_positive("kappa", kappa)
    nu = dim / 2.0 - 1.0
    return nu * math.log(kappa) - (dim / 2.0) * math.log(2.0 * math.pi) - log_bessel_iv(nu, kappa)
