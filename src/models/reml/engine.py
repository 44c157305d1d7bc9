"""The REML engine: exact REML / ML for nested Gaussian mixed models, O(rows) per evaluation.

The model is

    y = X beta + unit RE + therapist RE (nested in unit) [+ unit x period RE]
        + client RE (intercept, slope on ``time``) + residual,

with every random effect normal and the residual variance ``sigma^2``. The covariance of
``y`` is block diagonal by unit, ``V = sigma^2 H(theta)``. Nothing ever forms or factors
an n x n matrix. One likelihood evaluation is two sweeps of Woodbury's identity:

1. **Client blocks.** For client ``c`` with rows ``Z_c = [1, time]`` and relative
   covariance ``Gamma = L L'``, ``A_c = I + Z_c Gamma Z_c'`` has
   ``A_c^-1 = I - Z_c L M_c^-1 L' Z_c'`` with the 2 x 2 ``M_c = I + L' Z_c'Z_c L``.
   So ``W' A_c^-1 W`` for ``W = [X, y, Z_unit]`` needs only the per-client cross-products
   ``Z_c'W`` (computed once per fit) and a 2 x 2 inverse per client.
2. **Unit blocks.** Within unit ``u`` the therapist intercepts, the unit intercept (and
   the unit x period intercepts) form ``Z_u D Z_u'`` with a diagonal ``D``;
   ``H_u^-1 = A^-1 - A^-1 Z_u D^1/2 Q_u^-1 D^1/2 Z_u' A^-1`` with the small
   ``Q_u = I + D^1/2 Z_u'A^-1 Z_u D^1/2`` (therapists in the unit + 1 [+ periods]).

``log|H| = sum_c log|M_c| + sum_u log|Q_u|`` falls out of the same sweeps (matrix
determinant lemma). ``beta`` and ``sigma^2`` are profiled out; the relative standard
deviations (and the client Cholesky factor) are optimized with L-BFGS-B using the analytic
gradient ``tr(P dH) - (m / rss) r' dH r``, whose traces need only the 2 x 2 client blocks
and the unit-level diagonal of ``Z' P Z`` from the same sweeps (about 15 evaluations per
fit instead of about 90 with finite differences). The Cholesky
elements are unconstrained (``L L'`` is positive semi-definite for any sign), so a variance
can reach zero exactly, as in lme4.

:func:`models.reml.fit.fit_nested_lmm` optimizes it and returns a :class:`~models.reml.fit.MixedFit`.
"""

from __future__ import annotations

import math

import numpy as np

__all__: list[str] = []  # internal: models.reml.fit is the public entry

_LOG2PI = math.log(2.0 * math.pi)
_ENGINES = ("numba", "numpy")
_KERNELS = None  # models.reml.kernels once imported; False where numba is unavailable


def _kernels():
    """The numba kernels, imported on first use (numba takes ~0.3 s to import).

    Returns the module, or ``None`` when numba (or a kernel's compilation) is unavailable.
    """
    global _KERNELS
    if _KERNELS is None:
        try:
            from models.reml import kernels
        except ImportError:
            _KERNELS = False
        else:
            _KERNELS = kernels
    return _KERNELS or None


def _resolve_engine(engine):
    """``"numba"`` or ``"numpy"`` for an ``engine`` option (``None``: numba if it imports)."""
    if engine is None:
        return "numba" if _kernels() is not None else "numpy"
    if engine not in _ENGINES:
        raise ValueError(f"engine must be 'numba' or 'numpy', got {engine!r}")
    if engine == "numba" and _kernels() is None:
        raise ImportError("engine='numba' needs numba; use engine='numpy'")
    return engine

class _NestedLMM:
    """Sufficient statistics and the profiled likelihood of one data set.

    ``engine="numba"`` evaluates the profiled deviance and its gradient with the kernels
    in :mod:`models._reml_kernels`; ``"numpy"`` with the vectorized sweeps below (the
    reference, and the fallback where numba does not import). ``None`` picks numba when
    it imports.
    """

    def __init__(self, y, X, unit, therapist, client, z_slope, client_re, unit_period,
                 period, client_cov, engine=None):
        self.engine = _resolve_engine(engine)
        n, p = X.shape
        self.n, self.p = n, p
        # rows sorted by unit then client, so clients and units are contiguous; every
        # grouping below is a run in this one order (no further sorts of all rows)
        order = np.lexsort((client, unit))
        y, X = y[order], X[order]
        unit, therapist, client = unit[order], therapist[order], client[order]
        z_slope = z_slope[order]
        period = period[order] if period is not None else None

        new_u = np.empty(n, dtype=bool)
        new_u[0] = True
        np.not_equal(unit[1:], unit[:-1], out=new_u[1:])
        u_rstart = np.flatnonzero(new_u)
        u_idx = np.cumsum(new_u) - 1
        U = len(u_rstart)
        # clients: contiguous runs in the sorted order (a new unit starts a new client)
        new_c = new_u.copy()
        new_c[1:] |= client[1:] != client[:-1]
        c_start = np.flatnonzero(new_c)
        c_idx = np.cumsum(new_c) - 1
        C = len(c_start)
        c_unit = u_idx[c_start]
        u_cstart = np.searchsorted(c_unit, np.arange(U))

        # unit-level random-effect design: local therapist columns, unit column, periods
        has_t = therapist >= 0
        self.has_therapist = bool(has_t.any())
        local = np.full(n, -1, dtype=np.int64)
        if self.has_therapist:
            # local index of each therapist within its unit, in therapist-id order: one
            # sort of the (unit, therapist) pairs
            rows = np.flatnonzero(has_t)
            tt, uu = therapist[rows], u_idx[rows]
            o = np.lexsort((tt, uu))
            ts, us = tt[o], uu[o]
            newp = np.empty(len(o), dtype=bool)
            newp[0] = True
            newp[1:] = (ts[1:] != ts[:-1]) | (us[1:] != us[:-1])
            pstart = np.flatnonzero(newp)
            pu = us[pstart]
            rank = np.arange(len(pstart)) - np.searchsorted(pu, pu, side="left")
            local[rows[o]] = rank[np.cumsum(newp) - 1]
            qt = int(rank.max()) + 1
            self.n_therapists = len(pstart)
            # which therapist columns are real in each unit (padding gets zero variance)
            real_t = np.zeros((U, qt), dtype=bool)
            real_t[pu, rank] = True
        else:
            qt = 0
            self.n_therapists = 0
            real_t = np.zeros((U, 0), dtype=bool)
        self.unit_period = bool(unit_period and period is not None)
        col_p = np.full(n, -1, dtype=np.int64)
        if self.unit_period:
            p_codes, p_idx = np.unique(period, return_inverse=True)
            qp = len(p_codes)
            col_p[:] = qt + 1 + p_idx
        else:
            qp = 0
        q = qt + 1 + qp
        self.qt, self.qp, self.q = qt, qp, q
        self.real_t = real_t
        self.k = p + 1 + q
        self.client_re = client_re
        # an intercept-only client effect is the 2 x 2 case with a zero slope column
        zs = z_slope if client_re == 2 else np.zeros(n)
        self._u_cptr = np.append(u_cstart, C).astype(np.int64)
        if self.engine == "numba":
            self.WW, self.G, zz, self._e_ptr, self._e_col = _kernels().accumulate(
                np.ascontiguousarray(X), np.ascontiguousarray(y), np.ascontiguousarray(zs),
                np.append(u_rstart, n).astype(np.int64), np.append(c_start, n).astype(np.int64),
                self._u_cptr, local, col_p, qt, q, client_re == 2)
        else:
            Ze = np.zeros((n, q))
            if qt:
                Ze[has_t, local[has_t]] = 1.0
            Ze[:, qt] = 1.0
            if qp:
                Ze[np.arange(n), col_p] = 1.0
            W = np.column_stack([X, y, Ze])
            # per-unit W'W, per-client Z_c'W and Z_c'Z_c
            self.WW = np.add.reduceat(W[:, :, None] * W[:, None, :], u_rstart, axis=0)
            Zc = np.column_stack([np.ones(n), zs])
            self.G = np.add.reduceat(Zc[:, :, None] * W[:, None, :], c_start, axis=0)
            zz = np.add.reduceat(np.column_stack([np.ones(n), zs, zs * zs]), c_start, axis=0)
        # per client: n_c, sum t, sum t^2 (the 2 x 2 Z_c'Z_c)
        self.z00, self.z01, self.z11 = (np.ascontiguousarray(zz[:, j]) for j in range(3))
        self._O = None  # numpy sweep's client outer products, built on first use
        self._real_tf = real_t.astype(float)
        self.c_unit = c_unit
        self.u_cstart = u_cstart
        self.u_rstart, self.c_start = u_rstart, c_start
        self.U, self.C = U, C
        self.client_cov = client_cov
        self._prior = None
        self.y_sorted, self.X_sorted = y, X
        self.c_idx, self.u_idx = c_idx, u_idx
        self.n_eval = 0

        # parameter layout
        names = []
        if client_re == 1:
            names += ["c_int"]
        elif client_re == 2:
            names += (["l11", "l21", "l22"] if client_cov == "unstructured"
                      else ["l11", "l22"])
        if self.has_therapist:
            names.append("s_ther")
        names.append("s_unit")
        if self.unit_period:
            names.append("s_up")
        self.par_names = names
        # where the kernel finds l11 (or c_int), l21, l22, s_ther, s_unit, s_up in theta
        pos = {nm: i for i, nm in enumerate(names)}
        self._pidx = np.array([pos.get("l11", pos.get("c_int", -1)), pos.get("l21", -1),
                               pos.get("l22", -1), pos.get("s_ther", -1),
                               pos["s_unit"], pos.get("s_up", -1)], dtype=np.int64)

    def _numpy_blocks(self):
        """Client outer products for the numpy sweep (not needed by the numba kernel).

        ``sum_c G_c' N_c G_c`` per unit becomes one sparse (units x 3 clients) product
        with the outer products ``G_a' G_b`` for (a, b) = 00, 01 + 10, 11.
        """
        from scipy import sparse

        G, C, U, k = self.G, self.C, self.U, self.k
        o00 = G[:, 0, :, None] * G[:, 0, None, :]
        o01 = G[:, 0, :, None] * G[:, 1, None, :]
        o11 = G[:, 1, :, None] * G[:, 1, None, :]
        outer_g = np.stack([o00, o01 + o01.transpose(0, 2, 1), o11], axis=1)
        self._O = outer_g.reshape(C * 3, k * k)
        # clients are contiguous by unit: row u holds columns 3 * (its clients)
        self._S_sel = sparse.csr_matrix(
            (np.ones(C * 3), np.arange(C * 3), 3 * self._u_cptr), shape=(U, C * 3))

    # -- parameters ----------------------------------------------------------------
    def _unpack(self, theta):
        t = dict(zip(self.par_names, theta))
        if self.client_re == 1:
            L = np.array([[t["c_int"], 0.0], [0.0, 0.0]])
        elif self.client_re == 2:
            L = np.array([[t["l11"], 0.0], [t.get("l21", 0.0), t["l22"]]])
        else:
            L = None
        return L, t.get("s_ther", 0.0), t["s_unit"], t.get("s_up", 0.0)

    # -- the sweeps ----------------------------------------------------------------
    def sweep(self, theta, keep=False):
        """``S = [X y]' H^-1 [X y]`` and ``log|H|`` for relative parameters ``theta``.

        With ``keep=True`` also returns the pieces the gradient needs.
        """
        self.n_eval += 1
        L, s_t, s_u, s_p = self._unpack(theta)
        p1 = self.p + 1
        logdet = 0.0
        Cu = self.WW
        N = None
        if L is not None:
            a, b, c = L[0, 0], L[1, 0], L[1, 1]
            z00, z01, z11 = self.z00, self.z01, self.z11
            # M = I + L' Z'Z L for L = [[a, 0], [b, c]], elementwise over clients
            s0 = a * z00 + b * z01
            s1 = a * z01 + b * z11
            m00 = 1.0 + a * s0 + b * s1
            m01 = c * s1
            m11 = 1.0 + c * c * z11
            det = m00 * m11 - m01 * m01
            # N = L M^-1 L' (symmetric 2 x 2)
            i00, i01, i11 = m11 / det, -m01 / det, m00 / det
            n00 = a * a * i00
            n01 = a * (b * i00 + c * i01)
            n11 = b * b * i00 + 2 * b * c * i01 + c * c * i11
            logdet += float(np.log(det).sum())
            if self._O is None:
                self._numpy_blocks()
            sel = self._S_sel
            sel.data = np.column_stack([n00, n01, n11]).ravel()
            Cu = Cu - (sel @ self._O).reshape(self.U, self.k, self.k)
            if keep:
                N = (n00, n01, n11)
        # unit level
        d = np.empty((self.U, self.q))
        if self.qt:
            d[:, : self.qt] = np.where(self.real_t, abs(s_t), 0.0)
        d[:, self.qt] = abs(s_u)
        if self.qp:
            d[:, self.qt + 1:] = abs(s_p)
        E = slice(p1, p1 + self.q)
        Q = d[:, :, None] * Cu[:, E, E] * d[:, None, :]
        Q[:, np.arange(self.q), np.arange(self.q)] += 1.0
        Lq = np.linalg.cholesky(Q)
        logdet += 2.0 * float(np.log(np.diagonal(Lq, axis1=1, axis2=2)).sum())
        if not keep:
            Y = np.linalg.solve(Lq, d[:, :, None] * Cu[:, E, :p1])
            S = Cu[:, :p1, :p1].sum(0) - np.einsum("uqa,uqb->ab", Y, Y)
            return S, logdet
        # Rm = D^1/2 Q^-1 D^1/2: u'H^-1 v = u'A^-1 v - (u'A^-1 Z_e) Rm (Z_e'A^-1 v)
        Rm = d[:, :, None] * np.linalg.inv(Q) * d[:, None, :]
        CuE = Cu[:, E, :]
        RC = Rm @ CuE
        CuH = Cu - CuE.transpose(0, 2, 1) @ RC  # W'H^-1 W per unit
        S = CuH[:, :p1, :p1].sum(0)
        return S, logdet, (L, N, d, Rm, RC, CuH, s_t, s_u, s_p, Cu)

    def profile(self, theta, method, grad=False):
        """Profiled deviance (-2 log-likelihood), the GLS pieces and optionally the gradient.

        The gradient of the deviance in a parameter with ``dH`` is
        ``tr(P dH) - m / rss * r' dH r`` (REML; ``tr(H^-1 dH)`` for ML), ``r = H^-1 (y -
        X beta)``, ``m = n - p`` or ``n``; the traces need only the 2 x 2 client blocks
        and the unit-level diagonal of ``Z' P Z``, which the same sweeps provide.
        With ``engine="numba"`` one kernel call computes all of it.
        """
        if self.engine == "numba":
            self.n_eval += 1
            prec, m_fixed, rss_add = self._variant(method)
            dev, g, beta, XtX, sigma2 = _kernels().deviance(
                np.ascontiguousarray(theta, dtype=float), self._pidx, method != "ml",
                grad, self.n, self.p, self.q, self.qt, self.WW, self.G, self.z00,
                self.z01, self.z11, self._u_cptr, self._real_tf, self._e_ptr, self._e_col,
                prec, m_fixed, rss_add)
            if not math.isfinite(dev):
                return np.inf, None  # a far-out trial point: the line search backs off
            if not grad:
                return dev, (beta, XtX, sigma2)
            return dev, (beta, XtX, sigma2), g
        try:
            with np.errstate(all="ignore"):
                out = self.sweep(theta, keep=grad)
        except np.linalg.LinAlgError:
            return np.inf, None
        crit = self._criterion(out[0], out[1], method)
        if crit is None:
            return np.inf, None  # a far-out trial point: the line search backs off
        dev, beta, XtX, rss, m = crit
        if not grad:
            return dev, (beta, XtX, rss / m)
        return dev, (beta, XtX, rss / m), self._gradient(out[2], beta, XtX, rss, m, method)

    def set_prior(self, prec, a0: float, b0: float) -> None:
        """The conjugate prior of ``method="bayes"``: ``beta | sigma^2 ~ N(0, sigma^2
        diag(1 / prec))`` and ``sigma^2 ~ InvGamma(a0, b0)``.

        Then ``beta`` and ``sigma^2`` integrate out exactly and the "deviance" is
        ``-2 log p(y | theta)`` up to a constant:
        ``log|H| + log|X'H^-1 X + diag(prec)| + (n + 2 a0) log(q + 2 b0)`` with ``q``
        the penalized residual sum of squares (see :mod:`models.bayes.integrated`).
        """
        self._prior = (np.ascontiguousarray(prec, dtype=float), float(a0), float(b0))

    def _variant(self, method):
        """``(prec, m_fixed, rss_add)`` of the kernel for ``method``."""
        if method == "bayes":
            prec, a0, b0 = self._prior
            return prec, self.n + 2.0 * a0, 2.0 * b0
        return np.zeros(self.p), 0.0, 0.0

    def _criterion(self, S, logdet, method):
        """Profiled deviance and GLS pieces from ``S`` and ``log|H|``; ``None`` if invalid."""
        if not (np.isfinite(logdet) and np.isfinite(S).all()):
            return None
        p, n = self.p, self.n
        prec, m_fixed, rss_add = self._variant(method)
        XtX, Xty, yty = S[:p, :p] + np.diag(prec), S[:p, p], S[p, p]
        try:
            cf = np.linalg.cholesky(XtX)
        except np.linalg.LinAlgError:
            return None
        beta = np.linalg.solve(XtX, Xty)
        rss = max(yty - Xty @ beta, 1e-300) + rss_add
        m = m_fixed if m_fixed > 0 else (n - p if method == "reml" else n)
        dev = logdet + m * (math.log(rss / m) + _LOG2PI + 1.0)
        if method != "ml":
            dev += 2.0 * float(np.log(np.diagonal(cf)).sum())
        return dev, beta, XtX, rss, m

    def _gradient(self, pieces, beta, XtX, rss, m, method):
        L, N, d, Rm, RC, CuH, s_t, s_u, s_p, _ = pieces
        p, p1, qt = self.p, self.p + 1, self.qt
        E = slice(p1, p1 + self.q)
        Binv = np.linalg.inv(XtX)
        rvec = np.r_[-beta, 1.0]
        cst = m / rss
        reml = method != "ml"  # REML and the Bayesian variant project out X
        g = {}
        # unit-level columns: diag(Z_e' P Z_e) and Z_e' r
        eF = CuH[:, E, :p1]
        er = eF @ rvec
        diag_e = np.diagonal(CuH[:, E, E], axis1=1, axis2=2).copy()
        if reml:
            eX = eF[:, :, :p]
            diag_e -= np.einsum("uqi,ij,uqj->uq", eX, Binv, eX)
        contrib = diag_e - cst * er * er
        if self.has_therapist:
            g["s_ther"] = 2.0 * s_t * float(contrib[:, :qt][self.real_t].sum())
        g["s_unit"] = 2.0 * s_u * float(contrib[:, qt].sum())
        if self.unit_period:
            g["s_up"] = 2.0 * s_p * float(contrib[:, qt + 1:].sum())
        if L is not None:
            # client blocks, written out elementwise (2 x 2 per client): batched matmul
            # of tiny matrices costs more in numpy than the arithmetic
            G = self.G
            n00, n01, n11 = N
            z00, z01, z11 = self.z00, self.z01, self.z11
            # Z'Z N
            a00 = z00 * n00 + z01 * n01
            a01 = z00 * n01 + z01 * n11
            a10 = z01 * n00 + z11 * n01
            a11 = z01 * n01 + z11 * n11
            G0, G1 = G[:, 0], G[:, 1]
            # K = Z_c' A^-1 W and Z_c' A^-1 Z_c
            K0 = G0 - a00[:, None] * G0 - a01[:, None] * G1
            K1 = G1 - a10[:, None] * G0 - a11[:, None] * G1
            za00 = z00 - a00 * z00 - a01 * z01
            za01 = z01 - a00 * z01 - a01 * z11
            za11 = z11 - a10 * z01 - a11 * z11
            cu = self.c_unit
            KE0, KE1 = K0[:, E], K1[:, E]
            Rc = Rm[cu]
            T0 = np.einsum("cq,cqr->cr", KE0, Rc)
            T1 = np.einsum("cq,cqr->cr", KE1, Rc)
            h00 = za00 - (T0 * KE0).sum(1)
            h01 = za01 - (T0 * KE1).sum(1)
            h11 = za11 - (T1 * KE1).sum(1)
            # Z_c' H^-1 [X y]
            RCF = RC[:, :, :p1][cu]
            F0 = K0[:, :p1] - np.einsum("cq,cqf->cf", KE0, RCF)
            F1 = K1[:, :p1] - np.einsum("cq,cqf->cf", KE1, RCF)
            r0, r1 = F0 @ rvec, F1 @ rvec
            if reml:
                X0, X1 = F0[:, :p], F1[:, :p]
                B0, B1 = X0 @ Binv, X1 @ Binv
                h00 = h00 - (B0 * X0).sum(1)
                h01 = h01 - (B0 * X1).sum(1)
                h11 = h11 - (B1 * X1).sum(1)
            S00 = h00.sum() - cst * (r0 @ r0)
            S01 = h01.sum() - cst * (r0 @ r1)
            S11 = h11.sum() - cst * (r1 @ r1)
            gL = 2.0 * np.array([[S00, S01], [S01, S11]]) @ L
            if self.client_re == 1:
                g["c_int"] = gL[0, 0]
            else:
                g["l11"], g["l22"] = gL[0, 0], gL[1, 1]
                if self.client_cov == "unstructured":
                    g["l21"] = gL[1, 0]
        return np.array([g[nm] for nm in self.par_names], dtype=float)
