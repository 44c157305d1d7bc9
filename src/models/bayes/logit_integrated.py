"""The Bayesian logit mixed model for binary outcomes by nested integration: exact over each
client's effect, Laplace over the unit and therapist effects and the fixed effects, and
importance sampling over the three standard deviations.

The model of ``bayes_binary`` and its NUTS twin ``bayes_binary_nuts``
(:mod:`models.bayes.binary`), with the priors :data:`PRIORS`::

    logit P(y_ij = 1) = alpha + beta[occ] + delta[occ] * arm_i
                        + sigma_unit z_unit + sigma_therapist z_therapist + sigma_client w_i
    alpha, beta, delta ~ N(0, 2.5);  z, w ~ N(0, 1)
    sigma_unit, sigma_therapist ~ HalfNormal(1);  sigma_client ~ HalfNormal(2)

and the same estimand: the marginal risk difference at the primary month (the risk in each
arm averaged over the random effects, by Gauss-Hermite quadrature).

The integration rule
--------------------
Write ``x = (alpha, beta, delta, z_unit, z_therapist)`` (Gaussian prior) and ``theta`` the
three SDs. For each ``theta``:

1. every client's effect is integrated out by adaptive Gauss-Hermite quadrature,
   ``nodes`` (9) nodes at the mode of the client's effect scaled by its curvature (exact
   to ~1e-5 per client at a client SD of 1-2), so the clients, the large and weakly
   informed level (4-5 binary observations each), need no Laplace approximation;
2. ``x`` is integrated by the Laplace approximation around its conditional mode (Newton's
   method: the client-integrated likelihood is log-concave in ``x``, Prekopa), ``log p(y
   | theta) ~ g(x_hat) - log|L|`` with ``L L'`` the negative Hessian
   (:mod:`models.bayes.logit_kernels`). Each unit and therapist effect is informed by tens
   of observations, where the Laplace approximation is accurate. Far out, where a client
   SD of 5 or more makes a client's posterior too sharp-edged for 9 nodes and Newton's
   method fails, one node at the client modes (the Laplace approximation over the
   clients too) takes over; the posterior weight of such draws is reported and may not
   exceed :data:`FALLBACK_WEIGHT`;
3. the logits of the two arms at the primary month, ``eta = (alpha + beta_j, alpha +
   beta_j + delta_j)``, are drawn ``inner`` (256) times from their conditional
   distribution: Gaussian with the Laplace mean and covariance, along each Cholesky axis
   with split scales (a longer tail on one side, measured once at the posterior mode of
   ``theta`` by how fast ``g`` falls along the axis, :meth:`_Laplace.skew`): with few
   events in an arm a logit's posterior is skewed, which the plain Gaussian misses by up
   to 0.2 posterior SDs at an interval end.

``theta`` is integrated by importance sampling in the coordinates of
:class:`models.bayes.integrated.Coordinates`, every SD signed (the model depends on its
square; a client SD near zero, common with a few binary observations per client, is then
no boundary: on the log scale its long left tail defeated the proposal in 10% of 500
prior-predictive fits of ``benchmarks/sbc.py``, signed in 4%), as in
:func:`models.bayes.integrated.integrate`: the mode by
quasi-Newton steps on central differences, the Hessian there by central differences, a
split multivariate t proposal (4 degrees of freedom, scale x1.2), draws seeded by a
checksum of the data and the option ``seed``, Pareto-smoothed weights. Every evaluation
starts Newton's method from the latent mode at the mode of ``theta``, with the quadrature
nodes fixed at the client modes there (a function of the data alone: each fit is pure).
The posterior of the risk difference is the weighted mixture of the inner draws.

The fit checks its own integration error, like the Gaussian integrated route: the Monte
Carlo standard errors of the posterior mean, SD and both 95% ends (importance weights and
inner draws together) at most ``max_error`` (0.03) posterior SDs and Pareto ``k_hat`` below
``min(1 - 1 / log10 S, 0.7)``; the draws of ``theta`` double from 128 up to 2,048 until it
passes, and a fit that does not is flagged, never dropped. The approximations of steps 2
and 3 are checked against long NUTS runs of the same model (``benchmarks/agreement.py``,
and ``tests/test_bayes_binary.py`` on small data sets).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.base import EstimatorError
from models.bayes.base import IdMap, occasion_codes
from models.bayes.integrated import (
    Coordinates,
    Priors,
    _khat_bar,
    _split_scales,
    _TProposal,
    psis_weights,
)
from simulate.conventions import expit, gauss_hermite

__all__ = ["PRIORS", "LogitData", "BinaryPosterior", "integrate_binary", "marginal_risks",
           "arm_sds", "therapist_in_arm"]

#: prior scales (logit scale): normal SDs of alpha, beta, delta; half-normal scales of SDs
PRIORS = {"alpha": 2.5, "beta": 2.5, "delta": 2.5, "sigma_unit": 1.0,
          "sigma_therapist": 1.0, "sigma_client": 2.0}

#: Newton's convergence: the Newton decrement (twice the remaining log-density gain); the
#: value returned, g + dec / 2, is then within ~dec^2 = 1e-12 of the maximum: smooth enough
#: for the central differences of the mode search
_TOL = 1e-6
#: at the importance draws: the value returned, g + dec / 2, is then within ~dec^2 of the
#: maximum, immaterial to the weights (the Laplace approximation itself errs by more)
_TOL_DRAWS = 1e-4
_MAX_ITER = 60
#: the largest posterior weight the draws of the one-node fallback may hold (far-out
#: draws of a large client SD; their log density is then the Laplace approximation's)
FALLBACK_WEIGHT = 0.01


class LogitData:
    """The arrays of one prepared binary data set, rows grouped by client.

    Columns of the latent field: ``alpha`` (0), ``beta`` (1..k), ``delta`` (k+1..2k), the
    unit effects, then the therapist effects; ``k`` follow-up occasions.
    """

    def __init__(self, df: pd.DataFrame, primary_month: float, y=None):
        client, self.n_client = IdMap.codes(df["client"])
        order = np.argsort(client, kind="stable")
        occ, months, self.primary = occasion_codes(df, primary_month)
        if self.primary == 0:
            raise EstimatorError("the primary month is the baseline, where the arms cannot "
                                 "differ in this model; choose a follow-up month")
        unit, self.n_unit = IdMap.codes(df["unit"])
        ther, self.n_ther = IdMap.codes(df["therapist"])
        arm = df["arm"].to_numpy(float)
        self.k = len(months) - 1
        self.p = 1 + 2 * self.k
        occ, unit, ther, arm, client = occ[order], unit[order], ther[order], arm[order], \
            client[order]
        n = len(order)
        cols = np.full((n, 5), -1, np.int64)
        base = np.zeros((n, 5))
        kind = np.zeros((n, 5), np.int64)
        cols[:, 0], base[:, 0] = 0, 1.0
        f = occ > 0
        cols[f, 1], base[f, 1] = occ[f], 1.0
        g = f & (arm != 0)
        cols[g, 2], base[g, 2] = self.k + occ[g], arm[g]
        cols[:, 3], base[:, 3], kind[:, 3] = self.p + unit, 1.0, 1
        h = ther >= 0
        cols[h, 4], base[h, 4], kind[h, 4] = self.p + self.n_unit + ther[h], 1.0, 2
        self.cols, self.base, self.kind = cols, base, kind
        self.cptr = np.concatenate(
            [[0], np.cumsum(np.bincount(client, minlength=self.n_client))]).astype(np.int64)
        yy = df["outcome"].to_numpy(float) if y is None else np.asarray(y, float)
        self.y = np.ascontiguousarray(yy[order])
        self.dim = self.p + self.n_unit + self.n_ther
        self.therapist_in_arm = therapist_in_arm(df)
        self.par_names = ["s_unit"] + (["s_ther"] if self.n_ther else []) + ["s_client"]

    def checksum(self, seed: int) -> int:
        """A seed from the data (outcomes and design) and the option ``seed``."""
        crc = zlib.crc32(self.y.tobytes())
        crc = zlib.crc32(np.ascontiguousarray(self.cols).tobytes(), crc)
        crc = zlib.crc32(np.ascontiguousarray(self.base).tobytes(), crc)
        return (int(seed) * 1_000_003 + crc) % (2**32 - 1)


class _Laplace:
    """The Laplace log marginal of ``theta`` (in coordinates ``phi``) for one data set."""

    def __init__(self, d: LogitData, priors: dict[str, float], nodes: int):
        from models.bayes import logit_kernels

        self.kern = logit_kernels
        self.d = d
        t, w = gauss_hermite(nodes)
        self.t, self.logw = np.asarray(t, float), np.log(np.asarray(w, float))
        self.prec = np.concatenate([np.full(1, 1.0 / priors["alpha"] ** 2),
                                    np.full(d.k, 1.0 / priors["beta"] ** 2),
                                    np.full(d.k, 1.0 / priors["delta"] ** 2),
                                    np.ones(d.n_unit + d.n_ther)])
        self.coords = Coordinates(d.par_names, Priors(unit=priors["sigma_unit"],
                                                      therapist=priors["sigma_therapist"],
                                                      client=priors["sigma_client"]))
        self.x0 = np.zeros(d.dim)
        self.centre, self.spread = np.zeros(d.n_client), np.ones(d.n_client)
        self.adapt = True
        self.tol = _TOL
        self.evaluations = 0
        self.fallback = np.zeros(0, bool)  # of the last batch: the one-node evaluations

    def thetas(self, phi: np.ndarray) -> np.ndarray:
        """``(sigma_unit, sigma_therapist, sigma_client)`` at each row of ``phi``."""
        th = self.coords.theta(phi)
        out = np.zeros((th.shape[0], 3))
        for j, nm in enumerate(self.d.par_names):
            out[:, {"s_unit": 0, "s_ther": 1, "s_client": 2}[nm]] = th[:, j]
        return out

    def batch(self, phi: np.ndarray):
        """Log posterior (up to a constant), fixed-effect means and covariances."""
        d = self.d
        th = np.ascontiguousarray(self.thetas(phi))
        lm, means, covs, fallback = self.kern.laplace_batch(
            th, self.x0, d.y, d.cptr, d.cols, d.base, d.kind, self.t, self.logw, self.prec,
            self.tol, _MAX_ITER, d.p, self.centre, self.spread, self.adapt)
        self.evaluations += len(th)
        self.fallback = fallback
        return lm + self.coords.log_prior(phi), means, covs

    def neg_log_post(self, phi: np.ndarray) -> np.ndarray:
        lp = self.batch(np.atleast_2d(phi))[0]
        return np.where(np.isfinite(lp), -lp, np.inf)

    def _latent_mode(self, theta):
        d = self.d
        lm, x, _, _ = self.kern.laplace(theta, self.x0, d.y, d.cptr, d.cols, d.base, d.kind,
                                        self.t, self.logw, self.prec, _TOL, _MAX_ITER,
                                        self.centre, self.spread, True)
        return x if np.isfinite(lm) else self.x0

    def freeze(self, phi):
        """Start every later evaluation at the latent mode of ``theta(phi)``, with the
        quadrature nodes at the client modes there.

        During the search for the posterior mode of ``phi`` the nodes then follow each
        evaluation's client modes (``adapt``; far from the last iterate nodes left in
        place would integrate poorly); at the mode they are fixed, so that each
        importance draw is Newton's method on one fixed smooth function (a few steps):
        over the region that importance sampling explores they stay within a fraction of
        a posterior SD of the client modes, where 9-point adaptive quadrature is exact
        to ~1e-5 per client.
        """
        d = self.d
        th = self.thetas(np.atleast_2d(phi))[0]
        self.x0 = self._latent_mode(th)
        self.centre, self.spread = self.kern.client_nodes(
            th, self.x0, d.y, d.cptr, d.cols, d.base, d.kind, self.t, self.logw, self.prec)

    def skew(self, mode, reach: float = 2.0):
        """Split scales of the logits' conditional distribution at the mode of ``theta``.

        Along each Cholesky axis of the logits ``(eta0, eta1)`` (the control logit, then
        the treated logit given it), the latent field moves along its conditional
        regression on the logits by ``+-reach`` SDs; a Gaussian's log density falls by
        ``reach^2 / 2`` there, so where ``g`` falls by ``f`` the side's scale is ``reach /
        sqrt(2 f)`` (within [0.5, 2]). With few events in an arm the logit's posterior is
        skewed (a longer tail towards a rarer event), which these scales carry into the
        draws of the risks at every ``theta``.
        """
        from scipy.linalg import solve_triangular

        d = self.d
        th = self.thetas(np.atleast_2d(mode))[0]
        args = (d.y, d.cptr, d.cols, d.base, d.kind, self.t, self.logw, self.prec)
        lm, x, chol, _ = self.kern.laplace(th, self.x0, *args, _TOL, _MAX_ITER, self.centre,
                                           self.spread, False)
        if not np.isfinite(lm):
            return np.ones(2), np.ones(2)
        A = np.zeros((2, d.dim))
        A[:, :d.p] = _eta_map(d)
        W = solve_triangular(chol, A.T, lower=True)
        SA = solve_triangular(chol.T, W, lower=False)        # Sigma A'
        C = W.T @ W
        Lc = np.linalg.cholesky(C)
        g0 = self.kern.objective(th, x, *args, self.centre, self.spread)
        out = np.ones((2, 2))
        for k in range(2):
            step = SA @ np.linalg.solve(C, Lc[:, k])
            for side, sign in enumerate((-1.0, 1.0)):
                g = self.kern.objective(th, x + sign * reach * step, *args, self.centre,
                                        self.spread)
                fall = g0 - g
                out[side, k] = reach / math.sqrt(2.0 * fall) if fall > 0 else 2.0
        out = np.clip(out, 0.5, 2.0)
        return out[0], out[1]

    def _line_search(self, x, step, f0, slope, lo, hi):
        """The first of ``x + t step``, ``t = 1, 1/2, ...`` (down to 1e-4) with enough
        descent (Armijo, 1e-4), or None."""
        t = 1.0
        while t >= 1e-4:
            nxt = np.clip(x + t * step, lo, hi)
            if float(self.neg_log_post(nxt)[0]) <= f0 + 1e-4 * t * slope:
                return nxt
            t *= 0.5
        return None

    def mode(self):
        """The posterior mode of ``phi``, the inverse Hessian there and the number of
        quasi-Newton steps."""
        c = self.coords
        # start Newton at every later theta from the latent mode at the starting theta
        # (a fixed point of this data set: the fit stays a function of its data)
        self.freeze(c.start())

        # quasi-Newton (BFGS) on phi from the central-difference Hessian at the start,
        # with central-difference gradients (one batch of 1 + 2k evaluations per step);
        # Newton's tolerance in x makes f smooth to ~1e-12, so differences of h = 1e-3
        # are exact to ~1e-6
        self.adapt, self.tol = True, _TOL
        x = c.start()
        lo, hi = np.where(c.log_sd, -9.0, -10.0), np.where(c.log_sd, 3.0, 10.0)
        f0, g, H = _derivatives(self.neg_log_post, x, 1e-3)
        lam, V = np.linalg.eigh(H)
        B = (V * np.maximum(np.abs(lam), 1e-2)) @ V.T
        steps = 0
        while steps < 60:
            steps += 1
            step = -np.linalg.solve(B, g)
            # at most 1 in every coordinate, scaled as a whole: clipping coordinates one
            # by one can turn a descent direction into an ascent one
            step /= max(1.0, float(np.max(np.abs(step))))
            slope = float(g @ step)
            # the mode only centres the proposal: a predicted gain of 1e-4 in the log
            # posterior is a hundredth of a posterior SD away
            if -slope < 2e-4:
                break
            nxt = self._line_search(x, step, f0, slope, lo, hi)
            if nxt is None:
                # the quasi-Newton direction failed (an indefinite start): steepest descent
                step = -g / max(1.0, float(np.max(np.abs(g))))
                nxt = self._line_search(x, step, f0, float(g @ step), lo, hi)
                if nxt is None:
                    break
            self.freeze(nxt)
            f1, g1, _ = _derivatives(self.neg_log_post, nxt, 1e-3, hessian=False)
            sv, yv = nxt - x, g1 - g
            if sv @ yv > 1e-12:
                Bs = B @ sv
                B = B - np.outer(Bs, Bs) / (sv @ Bs) + np.outer(yv, yv) / (sv @ yv)
            x, f0, g = nxt, f1, g1
            if np.max(np.abs(sv)) < 1e-5:
                break
        mode = c.fold(x)
        self.freeze(mode)
        self.adapt, self.tol = False, _TOL_DRAWS
        H = _derivatives(self.neg_log_post, mode, 1e-3)[2]
        lam, V = np.linalg.eigh(H)
        # a flat direction (an SD the data do not inform) still needs a finite scale
        lam = np.maximum(lam, 0.25)
        return mode, (V / lam) @ V.T, steps


def _derivatives(f, x, h, hessian=True):
    """Value, central-difference gradient and Hessian of ``f`` (vectorized over rows) at
    ``x``: one call of ``f`` on ``1 + 2k + 2k(k - 1)`` points (``1 + 2k`` without the
    Hessian, then returned as None)."""
    k = len(x)
    E = np.eye(k) * h
    pts = [x]
    for i in range(k):
        pts += [x + E[i], x - E[i]]
    for i in range(k):
        for j in range(i + 1, k if hessian else 0):
            pts += [x + E[i] + E[j], x + E[i] - E[j], x - E[i] + E[j], x - E[i] - E[j]]
    v = f(np.array(pts))
    f0, it = v[0], 1
    g = np.empty(k)
    H = np.empty((k, k))
    for i in range(k):
        g[i] = (v[it] - v[it + 1]) / (2 * h)
        H[i, i] = (v[it] - 2 * f0 + v[it + 1]) / h**2
        it += 2
    if not hessian:
        return float(f0), g, None
    for i in range(k):
        for j in range(i + 1, k):
            H[i, j] = H[j, i] = (v[it] - v[it + 1] - v[it + 2] + v[it + 3]) / (4 * h * h)
            it += 4
    return float(f0), g, H


def therapist_in_arm(df: pd.DataFrame) -> list[bool]:
    """Whether any client of arm 0 and of arm 1 has a therapist (partial nesting: the
    control arm of the IPS pre-study has none)."""
    has_t = df["therapist"].to_numpy() != -1
    arm = df["arm"].to_numpy()
    return [bool(has_t[arm == a].any()) for a in (0, 1)]


def arm_sds(var_unit, var_therapist, var_client, in_arm) -> tuple:
    """The SD of the summed random effects in each arm: the therapist variance counts in
    an arm whose clients have therapists (``in_arm``, :func:`therapist_in_arm`)."""
    v = var_unit + var_client
    return tuple(np.sqrt(v + (var_therapist if in_arm[a] else 0.0)) for a in (0, 1))


def marginal_risks(eta: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``E[expit(eta + sd Z)]``, ``Z ~ N(0, 1)``, elementwise (20-point quadrature: exact
    to ~1e-8 for the SDs a logit model meets)."""
    x, w = gauss_hermite(20)
    return expit(eta[..., None] + np.asarray(sd)[..., None] * x) @ w


@dataclass
class BinaryPosterior:
    """The integrated posterior of one fit: ``S`` draws of ``theta`` with weights, and at
    each ``inner`` draws of the risks in the control and treated arms."""

    weights: np.ndarray   # (S,)
    theta: np.ndarray     # (S, 3): sigma_unit, sigma_therapist, sigma_client
    p0: np.ndarray        # (S, inner)
    p1: np.ndarray        # (S, inner)
    summary: dict
    diagnostics: dict

    @property
    def effect(self) -> np.ndarray:
        return self.p1 - self.p0

    def draws(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` joint posterior draws (weighted resampling of the pool)."""
        s_n, m = self.p0.shape
        flat = np.repeat(self.weights / m, m)
        i = rng.choice(s_n * m, size=n, p=flat / flat.sum())
        s = i // m
        th = self.theta[s]
        return {"effect": self.effect.ravel()[i], "risk_control": self.p0.ravel()[i],
                "risk_treated": self.p1.ravel()[i], "var_unit": th[:, 0] ** 2,
                "var_therapist": th[:, 1] ** 2, "var_client": th[:, 2] ** 2}

    def extra(self) -> dict:
        w = self.weights
        rr = self.p1 / self.p0
        flat = np.repeat(w / rr.shape[1], rr.shape[1])
        lo, hi = _weighted_quantiles(rr.ravel(), flat, [0.025, 0.975])
        th2 = self.theta**2
        return {"risk_control": float(w @ self.p0.mean(1)),
                "risk_treated": float(w @ self.p1.mean(1)),
                "risk_ratio": float(w @ rr.mean(1)), "risk_ratio_lower": lo,
                "risk_ratio_upper": hi, "var_unit": float(w @ th2[:, 0]),
                "var_therapist": float(w @ th2[:, 1]), "var_client": float(w @ th2[:, 2])}


def _weighted_quantiles(x, w, probs):
    o = np.argsort(x, kind="stable")
    c = np.cumsum(w[o])
    c = (c - 0.5 * w[o]) / c[-1]
    return [float(np.interp(p, c, x[o])) for p in probs]


def _mixture_summary(w, r, alpha):
    """Posterior summaries of the weighted mixture of the rows of ``r`` (S, M) and their
    Monte Carlo errors in posterior SDs: the delta method of self-normalized importance
    sampling over the rows, plus the inner draws' own variance within each row."""
    m = r.shape[1]

    def err(contrib, inner):
        return math.sqrt(float(contrib @ contrib) + float(w**2 @ inner) / m)

    mean_s, var_s = r.mean(1), r.var(1, ddof=1)
    mean = float(w @ mean_s)
    sq = (r - mean) ** 2
    u_s = sq.mean(1)
    var = float(w @ u_s)
    sd = math.sqrt(max(var, 0.0))
    err_mean = err(w * (mean_s - mean), var_s)
    err_sd = err(w * (u_s - var), sq.var(1, ddof=1)) / (2 * sd) if sd > 0 else 0.0
    flat = np.repeat(w / m, m)
    lower, upper = _weighted_quantiles(r.ravel(), flat, [alpha / 2, 1 - alpha / 2])
    sd_s = np.sqrt(np.maximum(var_s, 1e-300))
    errs = []
    for x, prob in ((lower, alpha / 2), (upper, 1 - alpha / 2)):
        f_s = (r <= x).mean(1)
        dens = float(w @ (np.exp(-0.5 * ((x - mean_s) / sd_s) ** 2)
                          / (sd_s * math.sqrt(2 * math.pi))))
        errs.append(err(w * (f_s - prob), f_s * (1 - f_s)) / max(dens, 1e-300))
    summary = {"estimate": mean, "se": sd, "lower": lower, "upper": upper,
               "p_positive": float(w @ (r > 0).mean(1))}
    scale = sd if sd > 0 else 1.0
    errors = {"mc_error_mean": err_mean / scale, "mc_error_sd": err_sd / scale,
              "mc_error_lower": errs[0] / scale, "mc_error_upper": errs[1] / scale}
    return summary, errors


def _eta_map(d: LogitData) -> np.ndarray:
    """The linear map from the fixed effects to the logits at the primary month in the
    control and treated arms: ``eta0 = alpha + beta_j``, ``eta1 = eta0 + delta_j``."""
    A = np.zeros((2, d.p))
    A[:, 0] = 1.0
    A[:, d.primary] = 1.0
    A[1, d.k + d.primary] = 1.0
    return A


def _risks(d: LogitData, theta, means, covs, rng, inner, left, right):
    """``inner`` draws of the marginal risks at the primary month at each ``theta``: the
    logits ``eta = mu + C (s(z) z)``, ``z ~ N(0, I)``, ``C`` the Cholesky factor of their
    conditional covariance and ``s`` the split scales of :meth:`_Laplace.skew`."""
    A = _eta_map(d)
    mu = means @ A.T                                   # (S, 2)
    cov = np.einsum("ap,spq,bq->sab", A, covs, A)     # (S, 2, 2)
    cov = 0.5 * (cov + np.transpose(cov, (0, 2, 1))) + 1e-12 * np.eye(2)
    L = np.linalg.cholesky(cov)
    z = rng.standard_normal((len(mu), inner, 2))
    z = z * np.where(z > 0, right, left)
    eta = mu[:, None, :] + np.einsum("sab,smb->sma", L, z)
    sd0, sd1 = arm_sds(theta[:, 0] ** 2, theta[:, 1] ** 2, theta[:, 2] ** 2,
                       d.therapist_in_arm)
    p0 = marginal_risks(eta[..., 0], np.broadcast_to(sd0[:, None], eta.shape[:2]))
    p1 = marginal_risks(eta[..., 1], np.broadcast_to(sd1[:, None], eta.shape[:2]))
    return p0, p1


def integrate_binary(d: LogitData, priors: dict[str, float] = PRIORS, *, alpha: float = 0.05,
                     seed: int = 0, nodes: int = 9, inner: int = 256, first_draws: int = 128,
                     max_draws: int = 2048, max_error: float = 0.03,
                     proposal_df: float = 4.0, inflate: float = 1.2,
                     skew: bool = True) -> BinaryPosterior:
    """The integrated posterior of the marginal risk difference (module docstring).

    Parameters
    ----------
    d : LogitData
    priors : dict
        Prior scales, as :data:`PRIORS`.
    alpha : float
        The interval is the equal-tailed ``1 - alpha`` credible interval.
    seed : int
        Mixed with a checksum of the data to seed every draw.
    nodes, inner : int
        Quadrature nodes per client; fixed-effect draws per draw of ``theta``.
    first_draws, max_draws, max_error, proposal_df, inflate
        As in :func:`models.bayes.integrated.integrate`.

    Returns
    -------
    BinaryPosterior
    """
    lap = _Laplace(d, priors, nodes)
    coords = lap.coords
    mode, cov, mode_steps = lap.mode()
    rng = np.random.default_rng(d.checksum(seed))
    lam, V = np.linalg.eigh(cov)
    axes = V * np.sqrt(lam)
    f0 = float(lap.neg_log_post(mode)[0])
    left, right = _split_scales(f0, axes, mode, lap.neg_log_post)
    prop = _TProposal(mode, axes * inflate, proposal_df, left, right)
    skew_left, skew_right = lap.skew(mode) if skew else (np.ones(2), np.ones(2))
    patterns = coords.sign_patterns()
    parts = []
    need = first_draws
    while True:
        have = sum(len(p[0]) for p in parts)
        phi = coords.fold(prop.draw(rng, need - have))
        lp, means, covs = lap.batch(phi)
        ok = np.isfinite(lp)
        theta = lap.thetas(phi)
        p0, p1 = _risks(d, theta, np.where(ok[:, None], means, 0.0),
                        np.where(ok[:, None, None], covs, np.eye(d.p)), rng, inner,
                        skew_left, skew_right)
        parts.append((phi, np.where(ok, lp - prop.log_pdf_folded(phi, patterns), -np.inf),
                      theta, p0, p1, ok, lap.fallback.copy()))
        phi_a, lw, theta_a, p0_a, p1_a, ok_a, fb_a = (np.concatenate(z) for z in zip(*parts))
        w, k_hat = psis_weights(lw, ok_a)
        summary, errors = _mixture_summary(w, p1_a - p0_a, alpha)
        good = max(errors.values()) <= max_error and k_hat < _khat_bar(len(phi_a))
        if good or len(phi_a) >= max_draws:
            break
        need = min(2 * len(phi_a), max_draws)
    diag = {"k_hat": k_hat, "ess": float(1.0 / np.sum(w**2)), "draws": int(len(phi_a)),
            **errors, "evaluations": lap.evaluations, "integration_ok": bool(good),
            "failed_laplace": int((~ok_a).sum()), "mode_steps": mode_steps,
            "fallback_draws": int(fb_a.sum()), "fallback_weight": float(w[fb_a].sum()),
            "skew_left": skew_left.tolist(), "skew_right": skew_right.tolist(),
            "mode": dict(zip(coords.names, map(float, mode)))}
    return BinaryPosterior(weights=w, theta=theta_a, p0=p0_a, p1=p1_a, summary=summary,
                           diagnostics=diag)
