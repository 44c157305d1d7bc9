"""Bayesian nested Gaussian mixed models by exact conditional integration plus importance
sampling over the variance parameters: a calibrated posterior at REML-like cost.

The model
---------
The nested model of :mod:`models.reml.engine`, ``y = X beta + Z u + e``, ``e ~ N(0,
sigma^2 I)``, with every random effect's covariance a multiple of ``sigma^2``: unit,
therapist and (stepped wedge) unit x period intercepts with standard deviations
``sigma s_unit``, ``sigma s_therapist``, ``sigma s_unit_period``, and per client an
intercept and a slope on model time with standard deviations ``sigma s_client``,
``sigma s_slope`` and correlation ``rho``. The priors (:class:`Priors`) are

- ``beta_j | sigma^2 ~ N(0, (g sigma)^2)`` independently, ``g = beta_sd`` (10);
- ``sigma^2 ~ InvGamma(a0, b0)`` (``sigma2_shape`` 2, ``sigma2_scale`` 25: mean 25 ORS
  points squared, weakly informative on the 0-40 scale);
- ``s_unit, s_therapist, s_unit_period ~ HalfNormal(0.5)``: a unit or therapist SD up to
  about the residual SD (shares of 1-10% are typical; Firth 2019, Johns 2019);
- ``s_client, s_slope ~ HalfNormal(2)``;
- ``(rho + 1) / 2 ~ Beta(2, 2)`` (the LKJ(2) prior of a 2 x 2 correlation).

Because every variance is relative to ``sigma^2`` and ``beta``'s prior scales with
``sigma``, ``beta`` and ``sigma^2`` integrate out exactly given the relative parameters
``theta``: with ``H = I + Z Lambda(theta) Z'``, ``B = X'H^-1 X + I / g^2``,
``beta_hat = B^-1 X'H^-1 y`` and ``q = y'H^-1 y - beta_hat' B beta_hat``,

    -2 log p(y | theta) = log|H| + log|B| + (n + 2 a0) log(q + 2 b0) + const,

and ``beta | theta, y`` is multivariate t with ``n + 2 a0`` degrees of freedom, location
``beta_hat`` and scale ``(q + 2 b0) / (n + 2 a0) B^-1``; ``sigma^2 | theta, y ~
InvGamma(a0 + n/2, b0 + q/2)``. The REML kernels evaluate exactly these quantities
(:func:`models.reml.kernels.deviance` with a prior precision) in O(rows), with the
gradient.

The integration rule
--------------------
The posterior of ``theta`` has a handful of dimensions (two to six). It is integrated by
importance sampling in the unconstrained coordinates ``phi`` of :class:`Coordinates`
(signed SDs, the client intercept's log SD, ``atanh rho``):

1. the posterior mode of ``phi`` by L-BFGS-B on the analytic gradient, from a fixed start;
2. the Hessian there by central differences of the gradient;
3. ``N`` draws (128 first) from a multivariate t proposal with 4 degrees of freedom,
   centred at the mode with the inverse Hessian inflated by 1.2^2 as scale matrix; the
   random stream is seeded by a checksum of the data (and the ``seed`` option), so a fit
   is a function of its data alone;
4. Pareto-smoothed importance weights (PSIS; Vehtari et al. 2024) of the exact
   unnormalized posterior against the proposal;
5. the posterior of the estimand is the weighted mixture of the exact conditional t
   distributions (Rao-Blackwellized): mean, SD, quantiles (by bisection of the mixture
   CDF) and P(effect > 0).

Its own integration-error check replaces R-hat and ESS: the Monte Carlo standard errors of
the posterior mean, the posterior SD and both interval endpoints (self-normalized
importance sampling, delta method) must be at most ``max_error`` (0.03) posterior SDs,
finer than the 0.05 of an effective sample size of 400, and the Pareto shape ``k_hat`` below its
threshold ``min(1 - 1 / log10(draws), 0.7)``. While a check
fails, the number of draws doubles, up to ``max_draws`` (4,096); a fit that still fails is
returned flagged (``converged=False``), never dropped.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special

__all__ = ["Priors", "Integrated", "integrate", "psis_weights", "check_diagnostics"]


@dataclass(frozen=True)
class Priors:
    """The priors of the integrated Gaussian mixed models (see the module docstring)."""

    beta_sd: float = 10.0
    sigma2_shape: float = 2.0
    sigma2_scale: float = 25.0
    unit: float = 0.5
    therapist: float = 0.5
    unit_period: float = 0.5
    client: float = 2.0
    slope: float = 2.0
    lkj_eta: float = 2.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Coordinates:
    """Unconstrained coordinates ``phi`` of a model's relative parameters ``theta``.

    ``theta`` is the kernel's (``_NestedLMM.par_names``): relative SDs and the client
    Cholesky factor ``[[l11, 0], [l21, l22]]``. In ``phi``:

    - the client intercept SD on the log scale (well identified; its posterior is close
      to normal there), with the log-Jacobian in the prior;
    - every other SD (therapist, unit, unit x period, client slope; and the client
      intercept's ``s_client`` of the logit model, whose clients have a few binary
      observations each, so that its SD is often near zero) as a *signed* number:
      the likelihood is unchanged when it changes sign (with the slope, together with the
      correlation), so the posterior extended by that symmetry, with each half-normal
      prior extended to a normal, is smooth through zero, where a weakly identified SD
      often is (a log scale would turn that into a long exponential tail);
    - ``atanh(rho)`` for a correlated client intercept and slope: ``l11 = sd_client``,
      ``l21 = rho sd_slope``, ``l22 = sd_slope sqrt(1 - rho^2)``.

    ``groups`` lists the coordinates that flip sign together under a symmetry.
    """

    _SCALE = {"sd_therapist": "therapist", "sd_unit": "unit", "sd_unit_period": "unit_period",
              "sd_slope": "slope", "log_sd_client": "client", "sd_client": "client"}
    _NAME = {"s_ther": "sd_therapist", "s_unit": "sd_unit", "s_up": "sd_unit_period",
             "c_int": "log_sd_client", "l11": "log_sd_client", "l22": "sd_slope",
             "l21": "atanh_rho", "s_client": "sd_client"}

    def __init__(self, par_names: list[str], priors: Priors):
        self.par_names = list(par_names)
        self.priors = priors
        self.names = [self._NAME[nm] for nm in self.par_names]
        self.k = len(self.names)
        self.idx = {nm: i for i, nm in enumerate(self.names)}
        self.correlated = "atanh_rho" in self.idx
        self.log_sd = np.array([nm == "log_sd_client" for nm in self.names], dtype=bool)
        self.signed = np.array([nm.startswith("sd_") for nm in self.names], dtype=bool)
        self.tau = np.array([getattr(priors, self._SCALE[nm]) if nm in self._SCALE else 1.0
                             for nm in self.names])
        self.groups = [[i] for i, nm in enumerate(self.names)
                       if nm.startswith("sd_") and nm != "sd_slope"]
        if "sd_slope" in self.idx:
            self.groups.append([self.idx["sd_slope"]]
                               + ([self.idx["atanh_rho"]] if self.correlated else []))

    def start(self) -> np.ndarray:
        """A fixed starting point: every relative SD 0.5, no correlation."""
        return np.where(self.log_sd, math.log(0.5), np.where(self.signed, 0.5, 0.0))

    def _rho(self, phi):
        return np.tanh(phi[..., self.idx["atanh_rho"]]) if self.correlated else 0.0

    def theta(self, phi: np.ndarray) -> np.ndarray:
        """Kernel parameters for points ``phi`` (shape ``(k,)`` or ``(M, k)``).

        Signed SDs pass through as they are: the kernel uses ``|s|`` for the unit-level
        ones (its gradient ``2 s c`` holds for either sign) and ``L L'`` for the client.
        """
        phi = np.atleast_2d(phi)
        rho = self._rho(phi)
        out = np.empty((phi.shape[0], len(self.par_names)))
        for j, nm in enumerate(self.par_names):
            c = phi[:, j]
            if nm in ("c_int", "l11"):
                out[:, j] = np.exp(c)
            elif nm == "l21":
                out[:, j] = rho * phi[:, self.idx["sd_slope"]]
            elif nm == "l22":
                out[:, j] = c * np.sqrt(1.0 - rho**2) if self.correlated else c
            else:
                out[:, j] = c
        return out

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        """``d theta / d phi`` at one point: shape ``(len(theta), k)``."""
        th = self.theta(phi)[0]
        J = np.zeros((len(self.par_names), self.k))
        rho = float(self._rho(phi))
        for j, nm in enumerate(self.par_names):
            if nm in ("c_int", "l11"):
                J[j, j] = th[j]
            elif nm == "l21":
                b, dr = phi[self.idx["sd_slope"]], 1.0 - rho**2  # d rho / d atanh(rho)
                J[j, self.idx["sd_slope"]] = rho
                J[j, j] = b * dr
            elif nm == "l22" and self.correlated:
                b = phi[j]
                J[j, j] = math.sqrt(1.0 - rho**2)
                J[j, self.idx["atanh_rho"]] = -rho * b * math.sqrt(1.0 - rho**2)
            else:
                J[j, j] = 1.0
        return J

    def log_prior(self, phi: np.ndarray) -> np.ndarray:
        """Log prior density of ``phi`` (with Jacobians), up to a constant; vectorized."""
        phi = np.atleast_2d(phi)
        lg = phi[:, self.log_sd]
        # HalfNormal(tau) on s = exp(phi): -s^2 / (2 tau^2) + phi
        lp = (lg - np.exp(2 * lg) / (2 * self.tau[self.log_sd] ** 2)).sum(axis=1)
        # HalfNormal(tau) on |s|, extended symmetrically: Normal(0, tau) on s
        lp = lp - (phi[:, self.signed] ** 2 / (2 * self.tau[self.signed] ** 2)).sum(axis=1)
        if self.correlated:
            x = np.abs(phi[:, self.idx["atanh_rho"]])
            # Beta(eta, eta) on (rho + 1) / 2 times d rho / d phi: (1 - rho^2)^eta, with
            # log(1 - tanh(x)^2) = -2 log cosh(x) written to stay finite for large |x|
            lp = lp - 2.0 * self.priors.lkj_eta * (x + np.log1p(np.exp(-2.0 * x))
                                                   - math.log(2.0))
        return lp

    def grad_log_prior(self, phi: np.ndarray) -> np.ndarray:
        g = np.zeros(self.k)
        g[self.log_sd] = 1.0 - np.exp(2 * phi[self.log_sd]) / self.tau[self.log_sd] ** 2
        g[self.signed] = -phi[self.signed] / self.tau[self.signed] ** 2
        if self.correlated:
            i = self.idx["atanh_rho"]
            g[i] = -2.0 * self.priors.lkj_eta * math.tanh(phi[i])
        return g

    def fold(self, phi: np.ndarray) -> np.ndarray:
        """The representative of ``phi`` whose signed SDs are non-negative."""
        out = np.array(phi, dtype=float, copy=True)
        for grp in self.groups:
            flip = out[..., grp[0]] < 0
            for j in grp:
                out[..., j] = np.where(flip, -out[..., j], out[..., j])
        return out

    def sign_patterns(self) -> np.ndarray:
        """Every combination of the symmetries, as sign multipliers: ``(2^groups, k)``."""
        pats = np.ones((2 ** len(self.groups), self.k))
        for r in range(len(pats)):
            for b, grp in enumerate(self.groups):
                if (r >> b) & 1:
                    pats[r, grp] = -1.0
        return pats


@dataclass
class Integrated:
    """The integrated posterior of one fit.

    Attributes
    ----------
    phi : ndarray (M, k)
        Draws of the unconstrained variance parameters.
    weights : ndarray (M,)
        Normalized (Pareto-smoothed) importance weights.
    mu, scale : ndarray (M,)
        Location and scale of the estimand's conditional t distribution at each draw.
    df : float
        Its degrees of freedom, ``n + 2 a0``.
    rss : ndarray (M,)
        ``q + 2 b0`` at each draw (``sigma^2 | theta, y ~ InvGamma(df / 2, rss / 2)``).
    theta : ndarray (M, len(par_names))
        The kernel parameters of each draw.
    par_names, names : list of str
        Kernel parameter names and ``phi`` names.
    summary : dict
        ``estimate, se, lower, upper, p_positive``.
    diagnostics : dict
        ``k_hat``, ``ess`` (of the weights), ``draws``, ``mc_error_mean``,
        ``mc_error_lower``, ``mc_error_upper`` (in posterior SDs), ``mode_evaluations``.
    """

    phi: np.ndarray
    weights: np.ndarray
    mu: np.ndarray
    scale: np.ndarray
    df: float
    rss: np.ndarray
    theta: np.ndarray
    par_names: list[str]
    names: list[str]
    summary: dict
    diagnostics: dict

    def variance_components(self) -> dict[str, float]:
        """Posterior means of the variance components on the outcome's scale."""
        w = self.weights
        sig2 = self.rss / (self.df - 2.0)  # E[sigma^2 | theta, y]
        t = dict(zip(self.par_names, self.theta.T))
        out = {"var_resid": float(w @ sig2)}
        for key, nm in (("var_unit", "s_unit"), ("var_therapist", "s_ther"),
                        ("var_unit_period", "s_up")):
            if nm in t:
                out[key] = float(w @ (sig2 * t[nm] ** 2))
        if "c_int" in t:
            out["var_client"] = float(w @ (sig2 * t["c_int"] ** 2))
        if "l11" in t:
            l21 = t.get("l21", np.zeros_like(t["l11"]))
            out["var_client"] = float(w @ (sig2 * t["l11"] ** 2))
            out["var_slope"] = float(w @ (sig2 * (l21**2 + t["l22"] ** 2)))
            out["cov_client_slope"] = float(w @ (sig2 * t["l11"] * l21))
        return out

    def draws(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` joint posterior draws of the estimand and the variance components."""
        i = rng.choice(len(self.weights), size=n, p=self.weights)
        sig2 = self.rss[i] / 2.0 / rng.gamma(self.df / 2.0, 1.0, size=n)
        # beta_t | theta, sigma^2 ~ N(mu, sigma^2 [B^-1]_tt); scale^2 = rss / df [B^-1]_tt
        sd = np.sqrt(sig2 * self.df / self.rss[i]) * self.scale[i]
        out = {"effect": self.mu[i] + sd * rng.standard_normal(n), "var_resid": sig2}
        t = dict(zip(self.par_names, self.theta[i].T))
        for key, nm in (("var_unit", "s_unit"), ("var_therapist", "s_ther"),
                        ("var_unit_period", "s_up"), ("var_client", "c_int")):
            if nm in t:
                out[key] = sig2 * t[nm] ** 2
        if "l11" in t:
            l21 = t.get("l21", np.zeros(n))
            out["var_client"] = sig2 * t["l11"] ** 2
            out["var_slope"] = sig2 * (l21**2 + t["l22"] ** 2)
        return out


def _seed(mdl, seed: int) -> int:
    crc = zlib.crc32(np.ascontiguousarray(mdl.WW).tobytes())
    crc = zlib.crc32(np.ascontiguousarray(mdl.G).tobytes(), crc)
    return (int(seed) * 1_000_003 + crc) % (2**32 - 1)


def _mode(mdl, coords: Coordinates):
    """Posterior mode of ``phi``: minimize ``f = dev / 2 - log prior`` with its gradient."""

    def f(phi):
        out = mdl.profile(coords.theta(phi)[0], "bayes", grad=True)
        if not np.isfinite(out[0]):
            return 1e30, np.zeros_like(phi)
        g = 0.5 * coords.jacobian(phi).T @ out[2] - coords.grad_log_prior(phi)
        return 0.5 * out[0] - float(coords.log_prior(phi)[0]), g

    res = optimize.minimize(f, coords.start(), jac=True, method="L-BFGS-B",
                            bounds=[(-15.0, 5.0) if lg else (-30.0, 30.0) if sg else (-6.0, 6.0)
                                    for lg, sg in zip(coords.log_sd, coords.signed)],
                            # the mode only centres the proposal: 1e-9 is plenty
                            options={"ftol": 1e-9, "gtol": 1e-5, "maxiter": 500})
    # the posterior is symmetric in the signed SDs: take the non-negative mode
    res.x = coords.fold(res.x)
    # Hessian by forward differences of the analytic gradient: it only scales the
    # proposal, so an error of order h (1e-4) relative is immaterial
    h = 1e-4
    k = coords.k
    g0 = f(res.x)[1]
    H = np.empty((k, k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = h
        H[:, j] = (f(res.x + e)[1] - g0) / h
    H = 0.5 * (H + H.T)
    lam, V = np.linalg.eigh(H)
    # a flat or curved-down direction (a variance at its boundary) still needs a finite
    # proposal scale: floor the curvature at that of the prior's own scale
    lam = np.maximum(lam, 0.25)
    cov = (V / lam) @ V.T
    return res, cov


def _mixture_quantiles(w, mu, sc, df, probs):
    """Quantiles of ``sum_i w_i t_df(mu_i, sc_i)``: Newton's method on the mixture CDF
    from the normal approximation, kept inside a bisection bracket (converged to 1e-10)."""
    keep = w > 0
    w, mu, sc = w[keep], mu[keep], sc[keep]
    mean = float(w @ mu)
    sd = math.sqrt(float(w @ (sc**2 * df / (df - 2.0) + mu**2)) - mean**2)
    out = []
    for p in probs:
        lo, hi = float(np.min(mu - 60 * sc)), float(np.max(mu + 60 * sc))
        x = mean + sd * float(special.ndtri(p))
        for _ in range(100):
            z = (x - mu) / sc
            f = float(w @ special.stdtr(df, z)) - p
            if f < 0:
                lo = x
            else:
                hi = x
            dens = float(w @ (np.exp(_log_t_pdf(z, df)) / sc))
            step = f / dens if dens > 0 else np.inf
            nxt = x - step
            if not lo < nxt < hi:  # Newton left the bracket: bisect instead
                nxt = 0.5 * (lo + hi)
            if abs(nxt - x) < 1e-10 * max(1.0, sd):
                x = nxt
                break
            x = nxt
        out.append(x)
    return np.array(out)


def _summarize(w, mu, sc, df, alpha):
    """Estimand posterior and the integration errors (in posterior SDs) of its summaries."""
    mean = float(w @ mu)
    var_t = sc**2 * df / (df - 2.0)
    sd = float(math.sqrt(max(w @ (var_t + mu**2) - mean**2, 0.0)))
    lower, upper = _mixture_quantiles(w, mu, sc, df, [alpha / 2, 1 - alpha / 2])
    p_pos = float(w @ special.stdtr(df, mu / sc))
    w2 = w**2
    err_mean = math.sqrt(float(w2 @ (mu - mean) ** 2))
    errs = []
    for x, prob in ((lower, alpha / 2), (upper, 1 - alpha / 2)):
        z = (x - mu) / sc
        cdf_i = special.stdtr(df, z)
        dens = float(w @ (np.exp(_log_t_pdf(z, df)) / sc))
        errs.append(math.sqrt(float(w2 @ (cdf_i - prob) ** 2)) / max(dens, 1e-300))
    # the SD: var = E[var_t + mu^2] - mean^2, delta method on the weighted average
    err_sd = math.sqrt(float(w2 @ (var_t + mu**2 - 2 * mean * mu - (sd**2 - mean**2)) ** 2)) \
        / (2 * sd) if sd > 0 else 0.0
    summary = {"estimate": mean, "se": sd, "lower": float(lower), "upper": float(upper),
               "p_positive": p_pos}
    scale = sd if sd > 0 else 1.0
    errors = {"mc_error_mean": err_mean / scale, "mc_error_sd": err_sd / scale,
              "mc_error_lower": errs[0] / scale, "mc_error_upper": errs[1] / scale}
    return summary, errors


def _log_t_pdf(z, df):
    return (special.gammaln((df + 1) / 2) - special.gammaln(df / 2)
            - 0.5 * math.log(df * math.pi) - (df + 1) / 2 * np.log1p(z**2 / df))



def _khat_bar(draws: int) -> float:
    """Pareto k threshold for ``draws`` draws: min(1 - 1/log10(S), 0.7) (Vehtari et al. 2024)."""
    return min(1.0 - 1.0 / math.log10(max(draws, 11)), 0.7)


class _TProposal:
    """A multivariate t proposal, optionally split: ``phi = loc + A (s(z) * z)`` with
    ``z ~ t_dof(0, I)`` and, per axis ``j``, the scale ``s_j = right_j`` where ``z_j > 0``
    and ``left_j`` where ``z_j < 0`` (a bijection, so its density is exact)."""

    def __init__(self, loc, axes, dof, left=None, right=None):
        self.loc, self.axes, self.dof = np.asarray(loc, float), np.asarray(axes, float), dof
        self.k = len(self.loc)
        self.left = np.ones(self.k) if left is None else np.asarray(left, float)
        self.right = np.ones(self.k) if right is None else np.asarray(right, float)
        self.log_det = float(np.linalg.slogdet(self.axes)[1])

    def draw(self, rng, m):
        z = rng.standard_normal((m, self.k))
        u = rng.chisquare(self.dof, m) / self.dof
        z = z / np.sqrt(u)[:, None]
        return self.loc + (z * np.where(z > 0, self.right, self.left)) @ self.axes.T

    def log_pdf_folded(self, phi, patterns):
        """Density of the folded draws (signed coordinates made non-negative) at ``phi``:
        the sum of the density over every sign pattern of the signed coordinates."""
        return special.logsumexp(np.stack([self.log_pdf(phi * sp) for sp in patterns]), axis=0)

    def log_pdf(self, phi):
        x = np.linalg.solve(self.axes, (phi - self.loc).T).T
        scale = np.where(x > 0, self.right, self.left)
        z = x / scale
        k, v = self.k, self.dof
        return (special.gammaln((v + k) / 2) - special.gammaln(v / 2)
                - 0.5 * k * math.log(v * math.pi) - self.log_det - np.log(scale).sum(1)
                - (v + k) / 2 * np.log1p((z**2).sum(1) / v))


def _split_scales(f0, axes, mode, neg_log_post, reach=2.0):
    """Per-axis scales of the posterior on each side of the mode (a skewness correction
    in the spirit of INLA's): along ``+-reach`` times each axis the negative log posterior
    rises by ``g``; a Gaussian of that side's scale ``s`` rises by ``reach^2 / (2 s^2)``,
    so ``s = reach / sqrt(2 g)``, kept within [0.25, 4]."""
    k = len(mode)
    pts = np.concatenate([mode + reach * axes.T, mode - reach * axes.T])
    g = neg_log_post(pts) - f0
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(np.isfinite(g) & (g > 0), reach / np.sqrt(2.0 * np.maximum(g, 1e-12)), 4.0)
    sc = np.clip(sc, 0.25, 4.0)
    return sc[k:], sc[:k]  # left (minus side), right (plus side)


@dataclass
class _Batch:
    """Importance draws and the exact conditional summaries at each."""

    phi: np.ndarray
    theta: np.ndarray
    log_target: np.ndarray
    log_q: np.ndarray
    mu: np.ndarray
    sc: np.ndarray
    rss: np.ndarray
    ok: np.ndarray

    def extend(self, other: _Batch) -> _Batch:
        return _Batch(*(np.concatenate([getattr(self, f), getattr(other, f)])
                        for f in ("phi", "theta", "log_target", "log_q", "mu", "sc", "rss",
                                  "ok")))

    def weights(self, smooth: bool) -> tuple[np.ndarray, float]:
        """Normalized (Pareto-smoothed) importance weights and the Pareto shape k_hat."""
        return psis_weights(self.log_target - self.log_q, self.ok, smooth)


def check_diagnostics(g: dict, max_error: float, seconds: float,
                      warnings: list[str] | None = None) -> dict:
    """An integrated fit's ``Estimate.diagnostics`` from its integration diagnostics ``g``:
    converged when the integration-error check passed and no other warning was raised."""
    warnings = list(warnings or [])
    if not g["integration_ok"]:
        warnings.insert(0, f"integration error above {max_error} posterior SDs or Pareto k "
                           f"{g['k_hat']:.2f} too high after {g['draws']} draws")
    keys = ("k_hat", "ess", "draws", "mc_error_mean", "mc_error_sd", "mc_error_lower",
            "mc_error_upper")
    return {"converged": not warnings, "fit_seconds": seconds, **{k: g[k] for k in keys},
            "warnings": warnings}


def psis_weights(log_ratio: np.ndarray, ok: np.ndarray, smooth: bool = True
                 ) -> tuple[np.ndarray, float]:
    """Normalized importance weights from log ratios (target over proposal), Pareto-smoothed
    (PSIS, Vehtari et al. 2024) when ``smooth`` and at least 5 draws are valid, and the
    Pareto shape ``k_hat`` (0 unsmoothed); draws not ``ok`` get weight 0."""
    import arviz as az

    lw = np.where(ok, log_ratio, -np.inf)
    k_hat = 0.0
    if smooth and ok.sum() >= 5:
        lw_s, k_hat = az.psislw(lw[ok].copy())
        lw = np.full(len(lw), -np.inf)
        lw[ok] = lw_s
        k_hat = float(k_hat)
    w = np.exp(lw - special.logsumexp(lw))
    w[~ok] = 0.0
    return w, k_hat


def _evaluate(phi, prop, *, kern, mdl, coords, target, prec, df, rss_add) -> _Batch:
    """Exact conditional quantities at each draw of ``phi`` (one numba call)."""
    k = phi.shape[1]
    theta = coords.theta(phi) if k else np.zeros((len(phi), 0))
    dev, mu, binv, rss = kern.deviance_batch(
        np.ascontiguousarray(theta), target, mdl._pidx, mdl.n, mdl.p, mdl.q, mdl.qt,
        mdl.WW, mdl.G, mdl.z00, mdl.z01, mdl.z11, mdl._u_cptr, mdl._real_tf, mdl._e_ptr,
        mdl._e_col, prec, df, rss_add)
    ok = np.isfinite(dev)
    log_target = -0.5 * dev + (coords.log_prior(phi) if k else 0.0)
    log_q = (prop.log_pdf_folded(phi, coords.sign_patterns()) if prop is not None
             else np.zeros(len(phi)))
    mu = np.where(ok, mu, 0.0)
    sc = np.sqrt(np.where(ok, rss * binv, 1.0) / df)
    return _Batch(phi, theta, np.where(ok, log_target, -np.inf), log_q, mu, sc, rss, ok)


def integrate(mdl, target: int, priors: Priors = Priors(), *, alpha: float = 0.05,
              seed: int = 0, first_draws: int = 128, max_draws: int = 4096,
              max_error: float = 0.03, proposal_df: float = 4.0,
              inflate: float = 1.2, split: bool = True) -> Integrated:
    """The integrated posterior of fixed effect ``target`` for a prepared model.

    Parameters
    ----------
    mdl : models.reml.engine._NestedLMM
        Sufficient statistics of one data set (numba engine).
    target : int
        Column of ``X`` whose coefficient is the estimand.
    priors : Priors
    alpha : float
        The interval is the equal-tailed ``1 - alpha`` credible interval.
    seed : int
        Mixed with a checksum of the data to seed the proposal draws.
    first_draws, max_draws : int
        Importance draws at first, and at most (doubling while a check fails).
    max_error : float
        Largest Monte Carlo error of the posterior mean and interval endpoints, in
        posterior SDs.
    proposal_df, inflate : float
        The t proposal's degrees of freedom and scale inflation.

    Returns
    -------
    Integrated
    """
    from models.reml.engine import _kernels

    n, p = mdl.n, mdl.p
    prec = np.full(p, 1.0 / priors.beta_sd**2)
    a0, b0 = priors.sigma2_shape, priors.sigma2_scale
    mdl.set_prior(prec, a0, b0)
    coords = Coordinates(mdl.par_names, priors)
    df = n + 2.0 * a0
    kern = _kernels()
    k = coords.k
    if k:
        res, cov = _mode(mdl, coords)
        mode, n_eval = res.x, int(res.nfev)
    else:
        mode, n_eval = np.zeros(0), 0
    rng = np.random.default_rng(_seed(mdl, seed))
    kw = dict(kern=kern, mdl=mdl, coords=coords, target=int(target), prec=prec, df=df,
              rss_add=2.0 * b0)
    if k:
        lam, V = np.linalg.eigh(cov)
        axes = V * np.sqrt(lam)

        def neg_log_post(phi):
            b = _evaluate(phi, None, **kw)
            return np.where(b.ok, -b.log_target, np.inf)

        f0 = float(neg_log_post(mode[None, :])[0])
        left, right = (_split_scales(f0, axes, mode, neg_log_post) if split
                       else (np.ones(k), np.ones(k)))
        prop = _TProposal(mode, axes * inflate, proposal_df, left, right)
    need = first_draws if k else 1
    batch = None
    while True:
        m = need - (0 if batch is None else len(batch.phi))
        new = (_evaluate(coords.fold(prop.draw(rng, m)), prop, **kw) if k
               else _evaluate(np.zeros((m, 0)), None, **kw))
        batch = new if batch is None else batch.extend(new)
        w, k_hat = batch.weights(k > 0)
        summary, errors = _summarize(w, batch.mu, batch.sc, df, alpha)
        good = max(errors.values()) <= max_error and k_hat < _khat_bar(len(batch.phi))
        if good or len(batch.phi) >= max_draws or not k:
            break
        need = min(2 * len(batch.phi), max_draws)
    phi, theta, mu_ok, sc, rss, ok = (batch.phi, batch.theta, batch.mu, batch.sc, batch.rss,
                                      batch.ok)
    diag = {"k_hat": k_hat, "ess": float(1.0 / np.sum(w**2)), "draws": int(len(phi)),
            **errors, "mode_evaluations": n_eval, "integration_ok": bool(good or not k),
            "mode": dict(zip(coords.names, map(float, mode)))}
    return Integrated(phi=phi, weights=w, mu=mu_ok, scale=sc, df=df,
                      rss=np.where(ok, rss, np.nan), theta=theta,
                      par_names=list(mdl.par_names), names=coords.names,
                      summary=summary, diagnostics=diag)
