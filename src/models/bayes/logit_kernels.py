"""Numba kernels of :mod:`models.bayes.logit_integrated`: the Laplace approximation of a
logit mixed model's likelihood over its unit and therapist effects, with every client's
effect integrated out exactly by Gauss-Hermite quadrature.

The latent field ``x = (fixed effects, z_unit, z_therapist)`` has a fixed Gaussian prior
(precision ``prec``; the random effects non-centred, ``u = sigma z``), and each row's linear
predictor is ``a_r = sum_j coef_rj x[col_rj]`` plus the client's effect ``sigma_c w``,
``w ~ N(0, 1)``. Given ``theta = (sigma_unit, sigma_therapist, sigma_client)``:

- ``log L_i(a) = log E_w[prod_r Bernoulli(y_r | expit(a_r + sigma_c w))]`` per client, by
  quadrature on the standard normal (nodes ``t``, log weights ``logw``). It is concave in
  ``a`` (Prekopa: the integrand is log-concave in ``(a, w)`` jointly), so Newton's method on
  ``g(x) = sum_i log L_i - x' diag(prec) x / 2`` is safe; its gradient and Hessian in ``a``
  are the client posterior's moments at the nodes;
- the Laplace approximation ``log p(y | theta) = g(x_hat) - log|L| + const``, ``L L'`` the
  negative Hessian at the mode ``x_hat`` (the prior's normalizer and the ``2 pi`` factors are
  constant in ``theta`` because the prior of ``x`` is).

This module imports numba; :mod:`models.bayes.logit_integrated` imports it on the first
fit.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from models.reml.kernels import _chol, _jit

__all__ = ["client_nodes", "laplace", "laplace_batch", "objective"]


@_jit
def _rows_per_client(cptr):
    """The most rows any client has (at least 1): the size of the per-client work arrays."""
    width = 1
    for i in range(cptr.shape[0] - 1):
        width = max(width, cptr[i + 1] - cptr[i])
    return width


@_jit
def _forward(chol, b):
    """Solve ``L z = b`` (``L`` lower triangular)."""
    d = b.shape[0]
    z = np.empty(d)
    for i in range(d):
        s = b[i]
        for j in range(i):
            s -= chol[i, j] * z[j]
        z[i] = s / chol[i, i]
    return z


@_jit
def _backward(chol, z):
    """Solve ``L' x = z``."""
    d = z.shape[0]
    x = np.empty(d)
    for i in range(d - 1, -1, -1):
        s = z[i]
        for j in range(i + 1, d):
            s -= chol[j, i] * x[j]
        x[i] = s / chol[i, i]
    return x


@_jit
def _pass(x, theta, y, cptr, cols, base, kind, t, logw, prec, grad, neg_h, e, v, lq, centre,
          spread, refresh):
    """One pass over the clients at ``x``: the objective ``g(x)``, and its gradient and
    negative Hessian written into ``grad`` and ``neg_h``. With ``refresh`` the quadrature
    nodes (``centre``, ``spread`` per client) are first moved to the client modes at
    ``x``; returns the objective and the sum of the log node scales (with one node, the
    part of the objective that is not maximized over x)."""
    d = x.shape[0]
    nq = t.shape[0]
    scale = np.array([1.0, theta[0], theta[1]])
    s_c = theta[2]
    obj = 0.0
    tau_sum = 0.0
    for j in range(d):
        obj -= 0.5 * prec[j] * x[j] * x[j]
        grad[j] = -prec[j] * x[j]
        for jj in range(d):
            neg_h[j, jj] = 0.0
        neg_h[j, j] = prec[j]
    n_clients = cptr.shape[0] - 1
    width = cols.shape[1]
    a = np.empty(e.shape[0])
    for i in range(n_clients):
        r0, r1 = cptr[i], cptr[i + 1]
        m = r1 - r0
        for r in range(m):
            s = 0.0
            for j in range(width):
                c = cols[r0 + r, j]
                if c >= 0:
                    s += base[r0 + r, j] * scale[kind[r0 + r, j]] * x[c]
            a[r] = s
        if refresh:
            # adaptive quadrature: nodes at the mode of the client's effect given a,
            # scaled by the curvature there (Newton's method: the log density is strictly
            # concave in w). Between refreshes the nodes stay put, so that Newton's
            # method in x works on one fixed, smooth function
            # Newton's method kept inside a bracket of the root of the derivative, with a
            # bisection whenever a step leaves the bracket or fails to halve the last
            # step (a sharply curved likelihood can make plain Newton bounce between the
            # bracket's ends, as with four events and a client SD of 3)
            mu = 0.0
            curv = 1.0
            lo, hi = -np.inf, np.inf
            last = np.inf
            for _ in range(200):
                g1 = -mu
                curv = 1.0
                for r in range(m):
                    p = 1.0 / (1.0 + math.exp(-(a[r] + s_c * mu)))
                    g1 += s_c * (y[r0 + r] - p)
                    curv += s_c * s_c * p * (1.0 - p)
                if g1 > 0.0:
                    lo = mu
                else:
                    hi = mu
                nxt = mu + g1 / curv
                if not lo < nxt < hi or abs(nxt - mu) > 0.5 * last:
                    if hi - lo < np.inf:
                        nxt = 0.5 * (lo + hi)
                    elif abs(g1 / curv) > 4.0:
                        nxt = mu + (4.0 if g1 > 0.0 else -4.0)
                last = abs(nxt - mu)
                if last < 1e-12:
                    break
                mu = nxt
            centre[i] = mu
            spread[i] = 1.0 / math.sqrt(curv)
        mu = centre[i]
        tau = spread[i]
        log_tau = math.log(tau)
        tau_sum += log_tau
        top = -np.inf
        for q in range(nq):
            wq = mu + tau * t[q]
            acc = logw[q] + log_tau - 0.5 * wq * wq + 0.5 * t[q] * t[q]
            # the likelihood as a product of probabilities, one exp per row and node and
            # one log per node (taken early should the product come near underflow)
            prod = 1.0
            for r in range(m):
                eta = a[r] + s_c * wq
                ex = math.exp(-abs(eta))
                inv = 1.0 / (1.0 + ex)
                if eta > 0.0:
                    p, p1 = inv, ex * inv
                else:
                    p, p1 = ex * inv, inv
                yr = y[r0 + r]
                prod *= p if yr > 0.5 else p1
                if prod < 1e-200:
                    acc += math.log(prod)
                    prod = 1.0
                e[r, q] = yr - p
                v[r, q] = p * p1
            acc += math.log(prod)
            lq[q] = acc
            if acc > top:
                top = acc
        tot = 0.0
        for q in range(nq):
            lq[q] = math.exp(lq[q] - top)
            tot += lq[q]
        obj += top + math.log(tot)
        for q in range(nq):
            lq[q] /= tot  # the client posterior's weight at node q
        curv1 = 1.0
        for r in range(m):
            curv1 += s_c * s_c * v[r, 0]
        # moments at the nodes: g_r = E[e_r], N_rs = E[v_r] delta_rs - Cov(e_r, e_s)
        for r in range(m):
            g_r = 0.0
            for q in range(nq):
                g_r += lq[q] * e[r, q]
            a[r] = g_r  # reuse: a now holds the gradient in a
        for r in range(m):
            rr = r0 + r
            for j in range(width):
                c = cols[rr, j]
                if c >= 0:
                    grad[c] += base[rr, j] * scale[kind[rr, j]] * a[r]
            for s_ in range(m):
                n_rs = 0.0
                if nq == 1:
                    # one node at the client mode (the Laplace approximation): the exact
                    # Hessian of max_w h(w, a), h's Hessian in a less the coupling with w
                    n_rs = -s_c * s_c * v[r, 0] * v[s_, 0] / curv1
                else:
                    for q in range(nq):
                        n_rs -= lq[q] * e[r, q] * e[s_, q]
                    n_rs += a[r] * a[s_]
                if r == s_:
                    for q in range(nq):
                        n_rs += lq[q] * v[r, q]
                ss = r0 + s_
                for j in range(width):
                    c = cols[rr, j]
                    if c < 0:
                        continue
                    cj = base[rr, j] * scale[kind[rr, j]] * n_rs
                    for jj in range(width):
                        c2 = cols[ss, jj]
                        if c2 >= 0:
                            neg_h[c, c2] += cj * base[ss, jj] * scale[kind[ss, jj]]
    return obj, tau_sum


@_jit
def laplace(theta, x0, y, cptr, cols, base, kind, t, logw, prec, tol, max_iter, centre0,
            spread0, adapt):
    """Newton's method for the mode of ``g`` given ``theta``, from ``x0``.

    The quadrature nodes start at ``centre0``, ``spread0`` (per client, on the scale of
    ``w``); with ``adapt`` they move to the client modes whenever Newton's method has
    converged for the current nodes, until it converges right after a move (so they end
    at the client modes of ``x_hat``), otherwise they stay put.

    Returns
    -------
    log_marginal : float
        ``g(x_hat) - log|L|`` (``-inf`` when Newton did not converge).
    x_hat : ndarray (d,)
    chol : ndarray (d, d)
        Lower Cholesky factor ``L`` of the negative Hessian at ``x_hat``.
    iterations : int
    """
    d = x0.shape[0]
    width = _rows_per_client(cptr)
    nq = t.shape[0]
    e = np.empty((width, nq))
    v = np.empty((width, nq))
    lq = np.empty(nq)
    grad = np.empty(d)
    neg_h = np.empty((d, d))
    chol = np.zeros((d, d))
    x = x0.copy()
    prev_x = x0.copy()
    step = np.zeros(d)
    centre = centre0.copy()
    spread = spread0.copy()
    prev_obj = -np.inf
    lam = 1.0
    # one node at the client modes is the Laplace approximation over the clients too: its
    # nodes move at every pass, where the gradient and the Hessian (the coupling with the
    # client effects eliminated) are those of max_w h(w, a), a concave function of x
    joint = nq == 1
    refresh = adapt or joint
    for it in range(max_iter):
        obj, tau_sum = _pass(x, theta, y, cptr, cols, base, kind, t, logw, prec, grad,
                                neg_h, e, v, lq, centre, spread, refresh)
        # what Newton's method maximizes (with one node, without the log node scales)
        merit = obj - tau_sum if joint else obj
        if refresh and not joint:
            prev_obj = -np.inf  # a new function: no comparison with the last one
        elif not merit >= prev_obj - 1e-12 * (1.0 + abs(prev_obj)):
            # the full step went downhill (far from the mode): halve it
            lam *= 0.5
            if lam < 1e-8:
                break
            for j in range(d):
                x[j] = prev_x[j] + lam * step[j]
            continue
        # the factor in chol's lower triangle (the solves below read nothing else)
        chol[:, :] = neg_h
        if not _chol(chol, d):
            break
        # Newton step: (L L') step = grad
        step = _backward(chol, _forward(chol, grad))
        dec = 0.0
        for j in range(d):
            dec += grad[j] * step[j]
        if dec < tol:
            if refresh or not adapt:
                # converged with the nodes at the client modes of x_hat itself: the Newton
                # decrement says g(x_hat) - g(x) is about dec / 2 < tol / 2
                logdet = 0.0
                for j in range(d):
                    logdet += math.log(chol[j, j])
                # the last step, not taken, still improves the mode: its error is then of
                # the order of dec^2 (Newton's quadratic convergence)
                for j in range(d):
                    x[j] += step[j]
                return obj + 0.5 * dec - logdet, x, chol, it + 1
            refresh = True  # converged for these nodes: move them to x and go on
            continue
        refresh = joint
        prev_obj = merit
        lam = 1.0
        for j in range(d):
            prev_x[j] = x[j]
            x[j] += step[j]
    return -np.inf, x, np.eye(d), max_iter


@_jit
def objective(theta, x, y, cptr, cols, base, kind, t, logw, prec, centre, spread):
    """``g(x)`` at ``theta`` with the quadrature nodes ``centre``, ``spread`` kept."""
    d = x.shape[0]
    width = _rows_per_client(cptr)
    nq = t.shape[0]
    obj, _ = _pass(x, theta, y, cptr, cols, base, kind, t, logw, prec, np.empty(d),
                   np.empty((d, d)), np.empty((width, nq)), np.empty((width, nq)),
                   np.empty(nq), centre.copy(), spread.copy(), False)
    return obj


@_jit
def client_nodes(theta, x, y, cptr, cols, base, kind, t, logw, prec):
    """The adaptive nodes (``centre``, ``spread`` per client) at ``theta`` and ``x``."""
    d = x.shape[0]
    n_clients = cptr.shape[0] - 1
    width = _rows_per_client(cptr)
    nq = t.shape[0]
    centre = np.zeros(n_clients)
    spread = np.ones(n_clients)
    _pass(x, theta, y, cptr, cols, base, kind, t, logw, prec, np.empty(d), np.empty((d, d)),
          np.empty((width, nq)), np.empty((width, nq)), np.empty(nq), centre, spread, True)
    return centre, spread


@numba.njit(parallel=True, cache=True, error_model="numpy", nogil=True)
def laplace_batch(thetas, x0, y, cptr, cols, base, kind, t, logw, prec, tol, max_iter, keep,
                  centre0, spread0, adapt):
    """:func:`laplace` at each row of ``thetas``, every one from ``x0`` and the nodes
    ``centre0``, ``spread0``, in parallel threads (each evaluation is independent of the
    others, so the result does not depend on the number of threads).

    Returns the log marginals, for the first ``keep`` latent coordinates (the fixed
    effects) their conditional means and covariances ``[(L L')^-1]_{:keep, :keep}``, and
    which evaluations fell back on one quadrature node per client.
    """
    n = thetas.shape[0]
    d = x0.shape[0]
    one_t = np.zeros(1)
    one_logw = np.zeros(1)
    fallback = np.zeros(n, np.bool_)
    out = np.empty(n)
    means = np.empty((n, keep))
    covs = np.empty((n, keep, keep))
    for i in numba.prange(n):
        lm, xh, chol, _ = laplace(thetas[i], x0, y, cptr, cols, base, kind, t, logw, prec,
                                  tol, max_iter, centre0, spread0, adapt)
        if not np.isfinite(lm):
            # far out (a client SD of 5 or more, where a client's posterior has a cliff
            # that 9 nodes cannot follow) the quadrature can lose the concavity of the
            # exact integral and Newton's method fails; there fall back on one node at
            # the client mode, the Laplace approximation over the clients too, which is
            # concave by construction (Prekopa), and say so
            lm, xh, chol, _ = laplace(thetas[i], x0, y, cptr, cols, base, kind, one_t,
                                      one_logw, prec, tol, max_iter, centre0, spread0, True)
            fallback[i] = True
        out[i] = lm
        for j in range(keep):
            means[i, j] = xh[j]
        # the fixed block of (L L')^-1 is W' W, W = L^-1 E_keep (its first keep columns)
        w = np.zeros((d, keep))
        for j in range(keep):
            unit = np.zeros(d)
            unit[j] = 1.0
            w[:, j] = _forward(chol, unit)
        for j in range(keep):
            for jj in range(keep):
                s = 0.0
                for r in range(d):
                    s += w[r, j] * w[r, jj]
                covs[i, j, jj] = s
    return out, means, covs, fallback
