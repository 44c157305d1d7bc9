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

Degrees of freedom for the Wald test (documented choice, ``df="between_within"``): the
number of groups at the lowest level (unit, therapist, client) at which the tested column
is constant, minus the number of fixed effects. A column that varies within clients (such
as ``arm:time``) counts as client level when a client random slope is fitted, because its
estimate is then a between-client comparison of slopes; otherwise it uses ``n - p``.
``df="normal"`` gives Wald z tests.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> unit = np.repeat(np.arange(6), 20); client = np.arange(120)
>>> therapist = unit * 2 + np.arange(120) % 2
>>> X = np.column_stack([np.ones(120), therapist % 2])
>>> y = X @ [1.0, 0.5] + rng.normal(size=6)[unit] + rng.normal(size=120)
>>> fit = fit_nested_lmm(y, X, unit, therapist, client)
>>> fit.beta.shape
(2,)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

__all__ = ["MixedFit", "fit_nested_lmm"]

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

@dataclass
class MixedFit:
    """Result of :func:`fit_nested_lmm`.

    Attributes
    ----------
    beta : ndarray
        Fixed effects (GLS at the optimum).
    cov_beta : ndarray
        ``sigma^2 (X' H^-1 X)^-1``.
    names : list of str
        Names of the fixed effects.
    sigma2 : float
        Residual variance.
    variances : dict
        ``var_unit``, ``var_therapist``, ``var_unit_period``, ``var_client``,
        ``var_slope``, ``cov_client_slope``, ``var_resid`` (absent components are 0).
    llf : float
        Maximized (restricted) log-likelihood, with the same constants as statsmodels.
    method : str
        ``"reml"`` or ``"ml"``.
    converged : bool
        The optimizer reported success.
    boundary : list of str
        Variance components estimated at (numerically) zero.
    n_eval : int
        Likelihood evaluations used.
    df : dict
        Between-within degrees of freedom per fixed effect.
    """

    beta: np.ndarray
    cov_beta: np.ndarray
    names: list[str]
    sigma2: float
    variances: dict[str, float]
    llf: float
    method: str
    converged: bool
    boundary: list[str] = field(default_factory=list)
    n_eval: int = 0
    theta: np.ndarray | None = None
    df: dict[str, float] = field(default_factory=dict)

    def se(self, name: str) -> float:
        """Standard error of the fixed effect ``name``."""
        i = self.names.index(name)
        return float(math.sqrt(max(self.cov_beta[i, i], 0.0)))

    def coef(self, name: str) -> float:
        """The fixed effect ``name``."""
        return float(self.beta[self.names.index(name)])


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

def fit_nested_lmm(y, X, unit, therapist, client, z_slope=None, *, method="reml",
                   client_re=None, client_cov="unstructured", period=None,
                   unit_period=False, names=None, start=None, tol=1e-10, engine=None):
    """Fit the nested linear mixed model by REML or ML.

    Parameters
    ----------
    y : array (n,)
        Outcome (observed rows only).
    X : array (n, p)
        Fixed-effect design, full column rank.
    unit, therapist, client : int arrays (n,)
        Groupings; ``therapist == -1`` means the client has no therapist effect.
    z_slope : array (n,), optional
        Covariate of the client random slope (``time``).
    method : {"reml", "ml"}
    client_re : {0, 1, 2}, optional
        Client random effects: none, intercept, intercept and slope. Default: 2 when
        ``z_slope`` is given, else 1.
    client_cov : {"unstructured", "diagonal"}
        Correlated client intercept and slope, or independent (statsmodels' variance
        components can only express the latter).
    period : int array (n,), optional
        Calendar period, for the unit x period random intercept.
    unit_period : bool
        Add a unit x period random intercept (stepped wedge, Hooper et al. 2016).
    names : list of str, optional
        Fixed-effect names.
    start : array or dict, optional
        Starting relative parameters (standard deviations relative to sigma, client
        Cholesky elements), as an array or a dict by name (``_NestedLMM.par_names``).
        Default: 0.5 for every relative SD and 0 for the client intercept-slope
        Cholesky term, a fixed point, so the fit depends on the data alone.
    tol : float
        L-BFGS-B ``ftol``.
    engine : {None, "numba", "numpy"}
        How the deviance and gradient are evaluated: the numba kernels
        (:mod:`models._reml_kernels`, compiled on the first fit and cached on disk) or the
        numpy sweeps (the reference). Both give the same fit to rounding. ``None``: numba
        when it imports, else numpy.

    Returns
    -------
    MixedFit
    """
    if method not in ("reml", "ml"):
        raise ValueError(f"method must be 'reml' or 'ml', got {method!r}")
    if client_cov not in ("unstructured", "diagonal"):
        raise ValueError(f"client_cov must be 'unstructured' or 'diagonal', got {client_cov!r}")
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (n, p) with n = len(y) = {len(y)}, got {X.shape}")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(X)):
        raise ValueError("y and X must be finite (drop unobserved rows first)")
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError("X is not of full column rank; drop collinear fixed effects")
    if client_re is None:
        client_re = 2 if z_slope is not None else 1
    if client_re not in (0, 1, 2):
        raise ValueError(f"client_re must be 0, 1 or 2, got {client_re!r}")
    if client_re == 2 and z_slope is None:
        raise ValueError("client_re=2 (random slope) needs z_slope")
    z = np.zeros_like(y) if z_slope is None else np.asarray(z_slope, dtype=float)
    unit = np.asarray(unit)
    therapist = np.asarray(therapist)
    client = np.asarray(client)
    per = None if period is None else np.asarray(period)
    if unit_period and per is None:
        raise ValueError("unit_period=True needs period")
    mdl = _NestedLMM(y, X, unit, therapist, client, z, client_re, unit_period, per,
                     client_cov, engine=engine)
    names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
    theta0 = np.array([0.0 if nm == "l21" else 0.5 for nm in mdl.par_names])
    if isinstance(start, dict):
        theta0 = np.array([start.get(nm, v) for nm, v in zip(mdl.par_names, theta0)])
    elif start is not None:
        theta0 = np.asarray(start, float)

    res = _lbfgs(mdl, theta0, method, tol)
    theta = res.x
    dev, (beta, XtX, sigma2) = mdl.profile(theta, method)
    cov = sigma2 * np.linalg.inv(XtX)
    L, s_t, s_u, s_p = mdl._unpack(theta)
    var = {"var_unit": sigma2 * s_u**2, "var_therapist": sigma2 * s_t**2,
           "var_unit_period": sigma2 * s_p**2, "var_client": 0.0, "var_slope": 0.0,
           "cov_client_slope": 0.0, "var_resid": sigma2}
    if L is not None:
        Gm = sigma2 * (L @ L.T)
        var["var_client"] = float(Gm[0, 0])
        if Gm.shape[0] == 2:
            var["var_slope"] = float(Gm[1, 1])
            var["cov_client_slope"] = float(Gm[0, 1])
    var = {k: float(v) for k, v in var.items()}
    present = {"var_unit": True, "var_therapist": mdl.has_therapist,
               "var_unit_period": mdl.unit_period, "var_client": client_re >= 1,
               "var_slope": client_re == 2}
    boundary = [k for k, on in present.items() if on and var[k] < 1e-6 * sigma2]
    df = _between_within_df(X, names, mdl, client_re)
    return MixedFit(beta=beta, cov_beta=cov, names=names, sigma2=float(sigma2),
                    variances=var, llf=-0.5 * float(dev), method=method,
                    converged=bool(res.success), boundary=boundary,
                    n_eval=mdl.n_eval, theta=theta, df=df)


def _lbfgs(mdl, theta0, method, tol):
    """L-BFGS-B on the profiled deviance with its analytic gradient."""

    def obj(th):
        out = mdl.profile(th, method, grad=True)
        if not np.isfinite(out[0]):
            # a trial point so far out that the sweeps lose precision: a large value
            # with a zero gradient makes the line search back off
            return 1e30, np.zeros_like(th)
        return out[0], out[2]

    # relative SDs beyond 30 (variance ratio 900) are never plausible; the bounds also
    # keep the first line search away from overflow
    return optimize.minimize(obj, theta0, jac=True, method="L-BFGS-B",
                             bounds=[(-30.0, 30.0)] * len(theta0),
                             options={"ftol": tol, "gtol": 1e-7, "maxiter": 500})


def _between_within_df(X, names, mdl, client_re):
    """Between-within df per fixed effect (see the module docstring).

    Units and clients are contiguous runs of the sorted rows, so the within-group range
    of every column is one ``reduceat`` per level.
    """
    Xs, n, p = mdl.X_sorted, mdl.n, mdl.p
    levels = []
    for starts, ng in ((mdl.u_rstart, mdl.U), (mdl.c_start, mdl.C)):
        lo = np.minimum.reduceat(Xs, starts, axis=0)
        hi = np.maximum.reduceat(Xs, starts, axis=0)
        levels.append((lo, hi, ng))
    # np.allclose's test (rtol 1e-5, atol 1e-8) for all columns at once
    const = [((np.abs(lo - hi) <= 1e-8 + 1e-5 * np.abs(hi)).all(axis=0), ng)
             for lo, hi, ng in levels]
    out = {}
    for j, nm in enumerate(names):
        g_n = None
        for ok, ng in const:
            if ok[j]:
                g_n = ng
                break
        if g_n is None:
            g_n = mdl.C if client_re == 2 else n
        out[nm] = float(max(g_n - p, 1))
    return out
