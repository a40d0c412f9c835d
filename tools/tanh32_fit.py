"""Coefficients of the float32 vector tanh (custom_ops/tanh_vec.h, tanh_vec(VecF)).

tanh x = 2 u / (1 + u^2) with u = tanh(x / 2) ~= M / E, M = x P(s), E = Q(s), s = x^2, so that
tanh x = 2 M E / (E^2 + M^2), for |x| <= c = 9 (tanh rounds to 1 in float32 from 9.01 on).
P(0) = 1 and Q(0) = 2 exactly, so that tiny x give M = x, E = 2 and tanh x = x.

A relative error r of u becomes an error r / cosh(x) of tanh x: the fit minimises
max |r(x)| / cosh(x) over x in (0, c] (a discrete minimax by bisection on the error level, each
level a linear feasibility problem |P - g Q| <= level cosh(x) g Q, Q > 0, g = tanh(x / 2) / x, on
a dense grid), then rounds the coefficients to float32. The float32 evaluation's rounding, not
this error, dominates (tools/tanh32_check.cc measures the whole function exhaustively).

    python tools/tanh32_fit.py [deg_P deg_Q]      (numpy, scipy)
"""
import sys

import numpy as np
from scipy.optimize import linprog

C = 9.0


def fit(m, n, c=C, npts=600):
    """Coefficients (ascending powers of s) of P (m) and Q (n) with P(0) = 1/2, Q(0) = 1, and the
    minimax level of the propagated relative error."""
    k = np.arange(npts)
    x = np.unique(np.concatenate([c * np.sin(0.5 * np.pi * k / (npts - 1)), np.linspace(0, c, npts)]))
    x[0] = 1e-4
    t = x * x / c**2  # the fit runs in s / c^2 (better conditioned), converted back below
    g = np.tanh(x / 2) / x
    w = 1 / np.cosh(x)
    A = np.vander(t, m + 1, increasing=True) / g[:, None]
    B = np.vander(t, n + 1, increasing=True)
    opts = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
    lo, hi, best = 1e-12, 1e-2, None
    while hi / lo > 1.05:
        level = np.sqrt(lo * hi) if best is not None else hi
        a = (level / w)[:, None]  # allowed relative error of u at each x, rows scaled by 1 / a
        rows = np.vstack([np.hstack([A / a, -(1 / a + 1) * B]), np.hstack([-A / a, (1 / a - 1) * B]),
                          np.hstack([np.zeros_like(A), -B])])
        rhs = np.concatenate([np.zeros(2 * len(t)), -0.5 * np.ones(len(t))])
        eq = np.zeros((2, m + n + 2))
        eq[0, 0], eq[1, m + 1] = 1, 1
        r = linprog(np.zeros(m + n + 2), A_ub=rows, b_ub=rhs, A_eq=eq, b_eq=[0.5, 1.0],
                    bounds=[(None, None)] * (m + n + 2), method="highs", options=opts)
        if r.status == 0:
            hi, best = level, r.x
        else:
            lo = level
    p = best[: m + 1] / c ** (2 * np.arange(m + 1))
    q = best[m + 1:] / c ** (2 * np.arange(n + 1))
    return p, q, hi


def main():
    m, n = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (2, 3)
    p, q, level = fit(m, n)
    # scaled by 2 (exact): P(0) = 1, Q(0) = 2
    p32, q32 = (2 * p).astype(np.float32), (2 * q).astype(np.float32)
    x = np.linspace(1e-4, C, 200001)
    s = x * x
    u = x * np.polyval(p32[::-1].astype(float), s) / np.polyval(q32[::-1].astype(float), s)
    err = np.max(np.abs(2 * u / (1 + u * u) / np.tanh(x) - 1))
    print(f"P degree {m}, Q degree {n}, |x| <= {C}: fitted level {level:.3g}, with float32 coefficients "
          f"max relative error {err:.3g} ({err / 2.0**-24:.2f} x 2^-24) in exact arithmetic")
    print("P:", ", ".join(f"{v:.9e}f" for v in p32))
    print("Q:", ", ".join(f"{v:.9e}f" for v in q32))


if __name__ == "__main__":
    main()
