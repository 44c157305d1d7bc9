"""Numba kernels for :mod:`models.reml.engine`: per-fit sufficient statistics and the profiled
deviance with its exact gradient in one pass over units and their clients.

The algebra is exactly that of :class:`models.reml.engine._NestedLMM` (two Woodbury sweeps, see
the :mod:`models.reml.engine` docstring); the numpy version there stays the reference and the
fallback. On the default FIT data (about 240 clients, 12 units) numpy spends almost all of
an evaluation in per-call overhead on small arrays; written out as loops over 2 x 2 client
blocks and ``q x q`` unit blocks, one evaluation is a few microseconds of arithmetic.

This module imports numba, so :mod:`models.reml.engine` imports it lazily, on the first fit
(``import models`` must stay cheap). The kernels are compiled on first call and cached on
disk (``cache=True``): next to this file, or in numba's user-wide cache directory when the
source tree is read-only, or, when neither is writable, in a temporary directory.
"""

from __future__ import annotations

import math
import os
import tempfile

import numba
import numpy as np

__all__ = ["accumulate", "deviance", "deviance_batch"]

_LOG2PI = math.log(2.0 * math.pi)


def _jit(fn):
    """``njit(cache=True)`` that still works from a read-only checkout.

    numba looks for a writable ``__pycache__`` next to the source, then a user-wide cache
    directory, and raises at decoration time when it finds neither; then the cache goes to
    a temporary directory (unless ``NUMBA_CACHE_DIR`` says otherwise), and as a last resort
    the kernel is compiled without a disk cache. ``error_model="numpy"``: a division by
    zero gives inf/nan like numpy (the far-out trial points the line search backs off
    from), instead of raising.
    """
    opts = {"cache": True, "error_model": "numpy", "nogil": True}
    try:
        return numba.njit(**opts)(fn)
    except RuntimeError:
        pass
    if not numba.config.CACHE_DIR:
        numba.config.CACHE_DIR = os.path.join(tempfile.gettempdir(), "fitlab-numba")
        try:
            return numba.njit(**opts)(fn)
        except RuntimeError:
            pass
    opts["cache"] = False
    return numba.njit(**opts)(fn)


@_jit
def accumulate(Xs, ys, zs, u_rstart, c_start, u_cptr, col_t, col_p, qt, q, slope):
    """Per-unit ``W'W`` and per-client ``Z_c'W`` and ``Z_c'Z_c`` for ``W = [X, y, Z_e]``.

    Parameters
    ----------
    Xs, ys, zs : float arrays (n, p), (n,), (n,)
        Rows sorted by unit, then client; ``zs`` is the client slope covariate.
    u_rstart, c_start : int arrays (U + 1,), (C + 1,)
        First row of each unit and of each client, with ``n`` appended.
    u_cptr : int array (U + 1,)
        First client of each unit, with ``C`` appended.
    col_t, col_p : int arrays (n,)
        The row's unit-level therapist column (``-1``: none) and unit x period column
        (``-1``: none), as positions in ``Z_e``.
    qt, q : int
        Therapist columns per unit (padded), unit-level columns in all.
    slope : bool
        Use ``zs`` as the client slope column (else the slope column is zero).

    Returns
    -------
    WW : (U, k, k), G : (C, 2, k), zz : (C, 3)
        With ``k = p + 1 + q``; ``zz`` holds ``n_c, sum t, sum t^2``. Rows are added in
        order, exactly as the numpy ``reduceat`` reference does.
    e_ptr, e_col : int arrays (C + 1,), (nnz,)
        The unit-level columns a client touches (its therapist, the unit, its periods),
        CSR by client: ``Z_c'Z_e`` is zero elsewhere, so the sweeps skip those columns
        (adding exact zeros changes nothing).
    """
    n, p = Xs.shape
    k = p + 1 + q
    U = u_rstart.shape[0] - 1
    C = c_start.shape[0] - 1
    WW = np.zeros((U, k, k))
    G = np.zeros((C, 2, k))
    zz = np.zeros((C, 3))
    w = np.zeros(k)
    for u in range(U):
        for c in range(u_cptr[u], u_cptr[u + 1]):
            for i in range(c_start[c], c_start[c + 1]):
                for j in range(p):
                    w[j] = Xs[i, j]
                w[p] = ys[i]
                for j in range(p + 1, k):
                    w[j] = 0.0
                if col_t[i] >= 0:
                    w[p + 1 + col_t[i]] = 1.0
                w[p + 1 + qt] = 1.0
                if col_p[i] >= 0:
                    w[p + 1 + col_p[i]] = 1.0
                for a in range(k):
                    wa = w[a]
                    for b in range(a + 1):
                        WW[u, a, b] += wa * w[b]
                z = zs[i] if slope else 0.0
                for a in range(k):
                    G[c, 0, a] += w[a]
                    G[c, 1, a] += z * w[a]
                zz[c, 0] += 1.0
                zz[c, 1] += z
                zz[c, 2] += z * z
        for a in range(k):
            for b in range(a):
                WW[u, b, a] = WW[u, a, b]
    e_ptr = np.zeros(C + 1, dtype=np.int64)
    for c in range(C):
        cnt = 0
        for e in range(q):
            if G[c, 0, p + 1 + e] != 0.0:
                cnt += 1
        e_ptr[c + 1] = e_ptr[c] + cnt
    e_col = np.empty(e_ptr[C], dtype=np.int64)
    for c in range(C):
        j = e_ptr[c]
        for e in range(q):
            if G[c, 0, p + 1 + e] != 0.0:
                e_col[j] = e
                j += 1
    return WW, G, zz, e_ptr, e_col


@_jit
def _chol(A, m):
    """In-place lower Cholesky factor of ``A[:m, :m]``; False if not positive definite."""
    for j in range(m):
        s = A[j, j]
        for t in range(j):
            s -= A[j, t] * A[j, t]
        if not s > 0.0:  # also catches nan
            return False
        ljj = math.sqrt(s)
        A[j, j] = ljj
        for i in range(j + 1, m):
            s = A[i, j]
            for t in range(j):
                s -= A[i, t] * A[j, t]
            A[i, j] = s / ljj
    return True


@_jit
def _chol_inv(Lf, m, out):
    """``out = (L L')^-1`` from the lower factor ``Lf`` (only its lower triangle is read)."""
    Li = np.zeros((m, m))
    for i in range(m):
        Li[i, i] = 1.0 / Lf[i, i]
        for j in range(i):
            s = 0.0
            for t in range(j, i):
                s += Lf[i, t] * Li[t, j]
            Li[i, j] = -s / Lf[i, i]
    for i in range(m):
        for j in range(i + 1):
            s = 0.0
            for t in range(i, m):
                s += Li[t, i] * Li[t, j]
            out[i, j] = s
            out[j, i] = s


@_jit
def deviance(theta, pidx, reml, grad, n, p, q, qt, WW, G, z00, z01, z11, u_cptr, real_t,
             e_ptr, e_col, prec, m_fixed, rss_add):
    """Profiled deviance (-2 log-likelihood) and, with ``grad``, its exact gradient.

    The same computation as ``_NestedLMM.sweep`` + ``_criterion`` + ``_gradient``.

    Parameters
    ----------
    theta : float array
        Relative parameters in ``_NestedLMM.par_names`` order.
    pidx : int array (6,)
        Where ``l11`` (or ``c_int``), ``l21``, ``l22``, ``s_ther``, ``s_unit``, ``s_up``
        sit in ``theta``; ``-1`` for an absent one (its value is then 0).
    reml, grad : bool
        REML (with ``log|X'H^-1 X|``) or ML; whether to compute the gradient.
    n, p, q, qt : int
        Rows, fixed effects, unit-level columns, therapist columns among them.
    WW, G, z00, z01, z11, u_cptr, real_t, e_ptr, e_col
        From :func:`accumulate` (``real_t``: 1.0 for a real therapist column of a unit,
        0.0 for padding).
    prec, m_fixed, rss_add : float array (p,), float, float
        The conjugate Bayesian variant (:mod:`models.bayes.integrated`): ``prec`` is
        added to the diagonal of ``X'H^-1 X`` (the prior precision of ``beta`` relative
        to ``sigma^2``), ``m_fixed`` (> 0) replaces the exponent ``m`` and ``rss_add``
        is added to the residual sum of squares (``2 b0`` of the inverse-gamma prior).
        Zeros give REML or ML exactly.

    Returns
    -------
    dev : float
        ``inf`` where the point is invalid (a failed factorization, non-finite pieces).
    g : float array
        The gradient (zeros unless ``grad`` and valid).
    beta, XtX, sigma2
        GLS fixed effects, ``X'H^-1 X`` and ``rss / m``.
    """
    U = WW.shape[0]
    k = WW.shape[1]
    p1 = p + 1
    E0 = p1  # first unit-level column of W
    npar = theta.shape[0]
    g = np.zeros(npar)
    beta = np.zeros(p)
    XtX = np.zeros((p, p))
    bad = (np.inf, g, beta, XtX, np.nan)

    has_client = pidx[0] >= 0
    a = theta[pidx[0]] if pidx[0] >= 0 else 0.0
    b = theta[pidx[1]] if pidx[1] >= 0 else 0.0
    c = theta[pidx[2]] if pidx[2] >= 0 else 0.0
    s_t = theta[pidx[3]] if pidx[3] >= 0 else 0.0
    s_u = theta[pidx[4]] if pidx[4] >= 0 else 0.0
    s_p = theta[pidx[5]] if pidx[5] >= 0 else 0.0

    C = G.shape[0]
    Nc = np.zeros((C, 3))  # N_c = L M_c^-1 L' per client, for the gradient pass
    Cu = np.empty((k, k))
    Qm = np.empty((q, q))
    d = np.empty(q)
    S = np.zeros((p1, p1))
    # per-unit pieces the gradient needs: R = D^1/2 Q^-1 D^1/2, R Z_e'A^-1 [X y],
    # Z_e'H^-1 [X y] and diag(Z_e'H^-1 Z_e)
    Rm = np.zeros((U, q, q))
    RCF = np.zeros((U, q, p1))
    eF = np.zeros((U, q, p1))
    dE = np.zeros((U, q))
    Qi = np.empty((q, q))
    RC = np.empty((q, k))
    Y = np.empty((q, p1))
    logdet = 0.0

    for u in range(U):
        for i in range(k):
            for j in range(k):
                Cu[i, j] = WW[u, i, j]
        if has_client:
            for ci in range(u_cptr[u], u_cptr[u + 1]):
                y00, y01, y11 = z00[ci], z01[ci], z11[ci]
                # M = I + L' Z'Z L for L = [[a, 0], [b, c]]
                s0 = a * y00 + b * y01
                s1 = a * y01 + b * y11
                m00 = 1.0 + a * s0 + b * s1
                m01 = c * s1
                m11 = 1.0 + c * c * y11
                det = m00 * m11 - m01 * m01
                if not det > 0.0:
                    return bad
                logdet += math.log(det)
                i00, i01, i11 = m11 / det, -m01 / det, m00 / det
                n00 = a * a * i00
                n01 = a * (b * i00 + c * i01)
                n11 = b * b * i00 + 2 * b * c * i01 + c * c * i11
                Nc[ci, 0], Nc[ci, 1], Nc[ci, 2] = n00, n01, n11
                # Cu -= G_c' N_c G_c (symmetric; lower triangle, mirrored below), on the
                # [X y] columns and the client's nonzero unit-level columns only
                for i in range(p1):
                    g0i = G[ci, 0, i]
                    g1i = G[ci, 1, i]
                    t0 = n00 * g0i + n01 * g1i
                    t1 = n01 * g0i + n11 * g1i
                    for j in range(i + 1):
                        Cu[i, j] -= t0 * G[ci, 0, j] + t1 * G[ci, 1, j]
                for ii in range(e_ptr[ci], e_ptr[ci + 1]):
                    i = E0 + e_col[ii]
                    g0i = G[ci, 0, i]
                    g1i = G[ci, 1, i]
                    t0 = n00 * g0i + n01 * g1i
                    t1 = n01 * g0i + n11 * g1i
                    for j in range(p1):
                        Cu[i, j] -= t0 * G[ci, 0, j] + t1 * G[ci, 1, j]
                    for jj in range(e_ptr[ci], ii + 1):
                        j = E0 + e_col[jj]
                        Cu[i, j] -= t0 * G[ci, 0, j] + t1 * G[ci, 1, j]
            for i in range(k):
                for j in range(i):
                    Cu[j, i] = Cu[i, j]
        # unit level: D^1/2 on the therapist (real ones), unit and period columns
        for j in range(qt):
            d[j] = abs(s_t) * real_t[u, j]
        d[qt] = abs(s_u)
        for j in range(qt + 1, q):
            d[j] = abs(s_p)
        for i in range(q):
            for j in range(q):
                Qm[i, j] = d[i] * Cu[E0 + i, E0 + j] * d[j]
            Qm[i, i] += 1.0
        if not _chol(Qm, q):
            return bad
        for i in range(q):
            logdet += 2.0 * math.log(Qm[i, i])
        if not grad:
            # S += Cu_FF - Y'Y with Y = Lq^-1 D^1/2 Cu_EF (forward substitution)
            for f in range(p1):
                for i in range(q):
                    s = d[i] * Cu[E0 + i, f]
                    for t in range(i):
                        s -= Qm[i, t] * Y[t, f]
                    Y[i, f] = s / Qm[i, i]
            for f in range(p1):
                for h in range(f + 1):
                    s = Cu[f, h]
                    for i in range(q):
                        s -= Y[i, f] * Y[i, h]
                    S[f, h] += s
            continue
        _chol_inv(Qm, q, Qi)
        for i in range(q):
            for j in range(q):
                Rm[u, i, j] = d[i] * Qi[i, j] * d[j]
        # RC = R Cu_E. (q x k); CuH = Cu - Cu_E.' RC, needed on [X y] x [X y] and E x [X y]
        for i in range(q):
            for j in range(k):
                s = 0.0
                for t in range(q):
                    s += Rm[u, i, t] * Cu[E0 + t, j]
                RC[i, j] = s
        for f in range(p1):
            for h in range(f + 1):
                s = Cu[f, h]
                for t in range(q):
                    s -= Cu[E0 + t, f] * RC[t, h]
                S[f, h] += s
        for i in range(q):
            for f in range(p1):
                s = Cu[E0 + i, f]
                for t in range(q):
                    s -= Cu[E0 + t, E0 + i] * RC[t, f]
                eF[u, i, f] = s
                RCF[u, i, f] = RC[i, f]
            s = Cu[E0 + i, E0 + i]
            for t in range(q):
                s -= Cu[E0 + t, E0 + i] * RC[t, E0 + i]
            dE[u, i] = s
    for f in range(p1):
        for h in range(f):
            S[h, f] = S[f, h]

    # profiled criterion
    if not math.isfinite(logdet):
        return bad
    for f in range(p1):
        for h in range(p1):
            if not math.isfinite(S[f, h]):
                return bad
    Lx = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            XtX[i, j] = S[i, j]
            Lx[i, j] = S[i, j]
        # a Gaussian prior on beta (precision relative to sigma^2) adds to X'H^-1 X
        XtX[i, i] += prec[i]
        Lx[i, i] += prec[i]
    if not _chol(Lx, p):
        return bad
    # beta = XtX^-1 X'y by two triangular solves
    tmp = np.empty(p)
    for i in range(p):
        s = S[i, p]
        for t in range(i):
            s -= Lx[i, t] * tmp[t]
        tmp[i] = s / Lx[i, i]
    for i in range(p - 1, -1, -1):
        s = tmp[i]
        for t in range(i + 1, p):
            s -= Lx[t, i] * beta[t]
        beta[i] = s / Lx[i, i]
    fit = 0.0
    for i in range(p):
        fit += S[i, p] * beta[i]
    rss = max(S[p, p] - fit, 1e-300) + rss_add
    m = m_fixed if m_fixed > 0 else (n - p if reml else n)
    dev = logdet + m * (math.log(rss / m) + _LOG2PI + 1.0)
    if reml:
        for i in range(p):
            dev += 2.0 * math.log(Lx[i, i])
    sigma2 = rss / m
    if not grad:
        return dev, g, beta, XtX, sigma2

    # gradient: tr(P dH) - (m / rss) r'dH r (H^-1 for P with ML), unit blocks first
    Binv = np.empty((p, p))
    _chol_inv(Lx, p, Binv)
    rvec = np.empty(p1)
    for i in range(p):
        rvec[i] = -beta[i]
    rvec[p] = 1.0
    cst = m / rss
    c_ther = 0.0
    c_unit = 0.0
    c_up = 0.0
    for u in range(U):
        for i in range(q):
            er = 0.0
            for f in range(p1):
                er += eF[u, i, f] * rvec[f]
            de = dE[u, i]
            if reml:
                s = 0.0
                for f in range(p):
                    t2 = 0.0
                    for h in range(p):
                        t2 += Binv[f, h] * eF[u, i, h]
                    s += eF[u, i, f] * t2
                de -= s
            contrib = de - cst * er * er
            if i < qt:
                if real_t[u, i] > 0.0:
                    c_ther += contrib
            elif i == qt:
                c_unit += contrib
            else:
                c_up += contrib
    if pidx[3] >= 0:
        g[pidx[3]] = 2.0 * s_t * c_ther
    if pidx[4] >= 0:
        g[pidx[4]] = 2.0 * s_u * c_unit
    if pidx[5] >= 0:
        g[pidx[5]] = 2.0 * s_p * c_up
    if not has_client:
        return dev, g, beta, XtX, sigma2

    # client blocks: Z_c'P Z_c and Z_c'r, each 2 x 2 / 2-vector
    K0 = np.empty(p1)
    K1 = np.empty(p1)
    ke0 = np.empty(q)
    ke1 = np.empty(q)
    F0 = np.empty(p1)
    F1 = np.empty(p1)
    Sh00 = 0.0
    Sh01 = 0.0
    Sh11 = 0.0
    Sr00 = 0.0
    Sr01 = 0.0
    Sr11 = 0.0
    for u in range(U):
        for ci in range(u_cptr[u], u_cptr[u + 1]):
            n00, n01, n11 = Nc[ci, 0], Nc[ci, 1], Nc[ci, 2]
            y00, y01, y11 = z00[ci], z01[ci], z11[ci]
            a00 = y00 * n00 + y01 * n01
            a01 = y00 * n01 + y01 * n11
            a10 = y01 * n00 + y11 * n01
            a11 = y01 * n01 + y11 * n11
            # K = Z_c'A^-1 W (on [X y] and the client's nonzero unit-level columns)
            # and Z_c'A^-1 Z_c
            for j in range(p1):
                g0 = G[ci, 0, j]
                g1 = G[ci, 1, j]
                K0[j] = g0 - a00 * g0 - a01 * g1
                K1[j] = g1 - a10 * g0 - a11 * g1
            e0 = e_ptr[ci]
            ne = e_ptr[ci + 1] - e0
            for jj in range(ne):
                j = E0 + e_col[e0 + jj]
                g0 = G[ci, 0, j]
                g1 = G[ci, 1, j]
                ke0[jj] = g0 - a00 * g0 - a01 * g1
                ke1[jj] = g1 - a10 * g0 - a11 * g1
            h00 = y00 - a00 * y00 - a01 * y01
            h01 = y01 - a00 * y01 - a01 * y11
            h11 = y11 - a10 * y01 - a11 * y11
            for rr in range(ne):
                r = e_col[e0 + rr]
                t0 = 0.0
                t1 = 0.0
                for tt in range(ne):
                    rv = Rm[u, e_col[e0 + tt], r]
                    t0 += ke0[tt] * rv
                    t1 += ke1[tt] * rv
                h00 -= t0 * ke0[rr]
                h01 -= t0 * ke1[rr]
                h11 -= t1 * ke1[rr]
            # Z_c'H^-1 [X y]
            r0 = 0.0
            r1 = 0.0
            for f in range(p1):
                s0 = K0[f]
                s1 = K1[f]
                for tt in range(ne):
                    rc = RCF[u, e_col[e0 + tt], f]
                    s0 -= ke0[tt] * rc
                    s1 -= ke1[tt] * rc
                F0[f] = s0
                F1[f] = s1
                r0 += s0 * rvec[f]
                r1 += s1 * rvec[f]
            if reml:
                for f in range(p):
                    b0 = 0.0
                    b1 = 0.0
                    for h in range(p):
                        b0 += F0[h] * Binv[h, f]
                        b1 += F1[h] * Binv[h, f]
                    h00 -= b0 * F0[f]
                    h01 -= b0 * F1[f]
                    h11 -= b1 * F1[f]
            Sh00 += h00
            Sh01 += h01
            Sh11 += h11
            Sr00 += r0 * r0
            Sr01 += r0 * r1
            Sr11 += r1 * r1
    S00 = Sh00 - cst * Sr00
    S01 = Sh01 - cst * Sr01
    S11 = Sh11 - cst * Sr11
    # d dev / d L = 2 S L for L = [[a, 0], [b, c]]
    g[pidx[0]] = 2.0 * (S00 * a + S01 * b)
    if pidx[1] >= 0:
        g[pidx[1]] = 2.0 * (S01 * a + S11 * b)
    if pidx[2] >= 0:
        g[pidx[2]] = 2.0 * S11 * c
    return dev, g, beta, XtX, sigma2


@_jit
def deviance_batch(thetas, target, pidx, n, p, q, qt, WW, G, z00, z01, z11, u_cptr, real_t,
                   e_ptr, e_col, prec, m_fixed, rss_add):
    """:func:`deviance` (REML-type, no gradient) at many parameter points, for integration.

    Parameters
    ----------
    thetas : float array (M, k)
        Relative parameters, one point per row.
    target : int
        The fixed effect whose conditional posterior is summarized.
    Others
        As :func:`deviance`.

    Returns
    -------
    dev, mu, binv, rss : float arrays (M,)
        The deviance, ``beta[target]``, ``[B^-1]_{target,target}`` for ``B = X'H^-1 X +
        diag(prec)``, and the residual sum of squares (with ``rss_add``); NaN where the
        point is invalid.
    """
    M = thetas.shape[0]
    dev = np.empty(M)
    mu = np.empty(M)
    binv = np.empty(M)
    rss = np.empty(M)
    e = np.zeros(p)
    for i in range(M):
        d, g, beta, B, s2 = deviance(thetas[i], pidx, True, False, n, p, q, qt, WW, G, z00,
                                     z01, z11, u_cptr, real_t, e_ptr, e_col, prec, m_fixed,
                                     rss_add)
        if not math.isfinite(d) or not _chol(B, p):
            dev[i] = np.inf
            mu[i] = binv[i] = rss[i] = np.nan
            continue
        # [B^-1]_tt = |L^-1 e_t|^2 with B = L L' (forward substitution)
        for j in range(p):
            e[j] = 0.0
        for j in range(target, p):
            s = 1.0 if j == target else 0.0
            for kk in range(target, j):
                s -= B[j, kk] * e[kk]
            e[j] = s / B[j, j]
        acc = 0.0
        for j in range(target, p):
            acc += e[j] * e[j]
        dev[i] = d
        mu[i] = beta[target]
        binv[i] = acc
        rss[i] = s2 * (m_fixed if m_fixed > 0 else n - p)
    return dev, mu, binv, rss
