"""Analytic power of the mixed model actually fitted, from the expected information.

``reml_trajectory`` (individual and cluster designs) and ``reml_stepped_wedge`` fit a
longitudinal mixed model to every observed occasion: fixed intercept, time, arm and
arm:time (the stepped wedge adds calendar-period effects and tests exposure:time); random
unit, therapist and unit x period (stepped wedge) intercepts, and a client intercept and
slope on time, correlated. The estimate is the arm:time coefficient (the difference at the
primary month) with its model-based standard error and a t test with between-within
degrees of freedom (clients minus fixed effects). :func:`fitted_power` predicts the power
of that test without simulation, in the manner of powerlmm (Magnusson 2018) for
therapist-clustered longitudinal designs, but for the model as fitted to *this*
simulator's data, which the model does not describe exactly:

1. **Expected design** (:func:`simulate.power.moments.expected_design`): kinds of unit and
   of client with their expected shares, the unit-size distribution, the attrition
   patterns.
2. **True moments of the recorded scores** (:func:`simulate.power.moments.client_moments`):
   the means and within-client covariances of the 0-40 scores by quadrature (clipping, the
   not-on-track and complier mixtures, effect heterogeneity), separately for clients who
   complete the follow-ups and those who leave (MAR attrition selects on the recorded
   baseline, MNAR on progress, with the simulator's calibrated intercepts:
   :func:`simulate.power.moments.selection_model`), and what clients share (the unit,
   unit x period and therapist intercepts, and the therapist's fidelity, which makes the
   FIT effect vary between therapists: a therapist random slope the model leaves out).
3. **What REML converges to**: the working variance parameters ``theta*`` that minimize
   the expected REML deviance ``E[-2 l(theta)] = log|V| + log|X'V^-1 X| + tr(P Sigma) +
   mu' P mu`` under the true mean ``mu`` and covariance ``Sigma``.
4. **The estimator's distribution**: its mean ``(X'V^-1X)^-1 X'V^-1 mu`` (the effect on
   the recorded scale as the model projects it), its true variance, the sandwich
   ``F^-1 X'V^-1 Sigma V^-1 X F^-1`` with ``F = X'V^-1X``, and the model-based variance
   ``F^-1`` that its test uses, all at ``theta*``.
   The true variance also counts how a client's contribution to the estimating
   equation varies with their attrition pattern (their residual mean differs by pattern).
5. **Power**: ``P(|b| > c se_model)`` for ``b ~ N(mean, true variance)`` and ``c`` the t
   quantile on the estimator's degrees of freedom (one-sided: in the direction of the
   effect).

Why here and not in ``models``: the answer is mostly the truth (the moments of what the
simulator records), which belongs to ``simulate``; the REML engine
(:mod:`models.reml.engine`) evaluates ``X'H^-1X`` on actual rows, with no fractional
weights, and has no use for a true covariance different from the working one, which the
sandwich needs. The expected design is small (a few hundred kinds of client), so dense
``J x J`` client blocks and Woodbury's identity at the unit level are cheap and keep
``simulate`` free of ``models``.

Every sum over the clients of a unit is an expected sum (the share of each kind of
client times the unit's size), and units are summed over the size distribution: exact
for the unit's information when all units of a kind hold the same mix of clients, a
mean-field approximation otherwise. Each unit's ``X'V^-1X`` comes from Woodbury's
identity with the client blocks (``J x J``) and the unit-level effects (therapists, unit,
periods), as in :mod:`models.reml.engine`.

Examples
--------
>>> from simulate import load_scenario
>>> out = fitted_power(load_scenario(None).replace({"effect.d": 1.0}))
>>> out["estimator"], 0.5 < out["power"] < 0.8
('reml_trajectory', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

from simulate.outcomes import variance_components
from simulate.power.checks import PowerInputError
from simulate.power.moments import (
    attrition_patterns,
    client_moments,
    expected_design,
    selection_model,
)

__all__ = ["fitted_power", "fitted_model", "FittedModel", "ESTIMATOR_OF"]

#: The estimator whose power is computed, by design.
ESTIMATOR_OF = {"individual": "reml_trajectory", "cluster": "reml_trajectory",
                "stepped_wedge": "reml_stepped_wedge"}


@dataclass
class _Kind:
    """The client rows of one kind of unit: one row per kind of client x attrition pattern."""

    count: float  # units of this kind
    E: np.ndarray  # rows x J x nE: [X, mu, therapist, unit, unit x period (working)]
    T: np.ndarray  # rows x J x nT: loadings of the shared effects of the truth
    B: np.ndarray  # rows x J x J: the client's own covariance (shared parts removed)
    obs: np.ndarray  # rows x J, observed occasions
    w: np.ndarray  # rows: expected share of the unit's clients
    group: np.ndarray  # rows: therapist group (-1 none)
    therapists: tuple[int, ...]  # therapists per group
    maps: list | None = None  # (group, share, ME, MT) from :func:`_maps`
    client: np.ndarray | None = None  # rows: which kind of client (over all unit kinds)


@dataclass
class FittedModel:
    """The expected design, the truth and the working model of one scenario.

    Built by :func:`fitted_model`; :meth:`evaluate` gives the estimator's distribution at
    working parameters ``theta`` and :meth:`solve` finds what REML converges to.
    """

    kinds: list[_Kind]
    sizes: np.ndarray
    size_prob: np.ndarray
    time: np.ndarray
    names: list[str]
    target: int
    p: int  # fixed effects
    n_periods_work: int  # unit x period effects in the working model (0: none)
    d_true: np.ndarray  # variances of the shared effects of the truth (generic columns)
    n_periods: int
    has_therapist: bool
    clients: float  # expected clients in the trial
    start_theta: np.ndarray
    truth: dict[str, float]
    rows: dict | None = None  # the client rows of all kinds in one batch

    # -- the working covariance -------------------------------------------------------
    def _unpack(self, theta):
        s2 = math.exp(theta[0])
        L = np.array([[math.exp(theta[1]), 0.0], [theta[2], math.exp(theta[3])]])
        var = np.exp(theta[4:])
        return s2, L @ L.T, var

    def _unit_d(self, var, k: int) -> np.ndarray:
        """Working variances of a unit's random effects: therapists, unit, periods."""
        ther, unit = var[0], var[1]
        up = [var[2]] * self.n_periods_work if self.n_periods_work else []
        return np.array([ther] * k + [unit] + up)

    def evaluate(self, theta, beta=None) -> dict[str, Any]:
        """Expected REML deviance and the estimator's moments at working ``theta``.

        With ``beta`` (the estimator's expected fixed effects, from a first call) the
        estimator's variance also counts how its mean contribution varies with the
        attrition pattern (:func:`_client_sums`); the deviance leaves that term out.
        """
        s2, G, var = self._unpack(theta)
        p1 = self.p + 1
        F = np.zeros((p1, p1))
        meat = np.zeros((p1, p1))
        logdet = 0.0
        trace = 0.0
        sums = _client_sums(self, s2, G, beta)
        for kind, ksums in zip(self.kinds, sums):
            out = _unit_terms(kind, ksums, self, self._unit_d(var, sum(kind.therapists)))
            F += out["F"]
            meat += out["meat"]
            logdet += out["logdet"]
            trace += out["trace"]
        p = self.p
        Fxx, Fxm, Fmm = F[:p, :p], F[:p, p], F[p, p]
        try:
            chol = np.linalg.cholesky(Fxx)
        except np.linalg.LinAlgError:
            return {"deviance": np.inf}
        Finv = np.linalg.inv(Fxx)
        beta = Finv @ Fxm
        cov_true = Finv @ meat[:p, :p] @ Finv
        dev = (logdet + 2.0 * float(np.log(np.diag(chol)).sum()) + trace
               - float(np.sum(Finv * meat[:p, :p])) + Fmm - Fxm @ beta)
        return {"deviance": float(dev), "beta": beta, "cov_model": Finv, "cov_true": cov_true,
                "sigma2": s2, "G": G, "var": var}

    def moments(self, theta) -> dict[str, Any]:
        """The estimator's mean, true and model covariance at ``theta`` (two passes)."""
        first = self.evaluate(theta)
        return {**self.evaluate(theta, first["beta"]), "deviance": first["deviance"]}

    def solve(self, start=None) -> tuple[np.ndarray, dict]:
        """Working parameters that minimize the expected REML deviance, and the moments."""
        theta0 = self.start_theta if start is None else np.asarray(start, float)

        def fun(th):
            return self.evaluate(th)["deviance"]

        # BFGS from a start close to the optimum: a gradient of 0.01 deviance units
        # leaves the standard errors within 1e-4 of the optimum's (L-BFGS-B took about
        # four times as many evaluations for the same answer)
        res = optimize.minimize(fun, theta0, method="BFGS", options={"gtol": 1e-2})
        return res.x, self.moments(res.x)


def _inv_psd(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and log-determinant of a batch of symmetric positive definite matrices."""
    chol = np.linalg.cholesky(A)
    eye = np.broadcast_to(np.eye(A.shape[-1]), A.shape)
    Linv = np.linalg.solve(chol, eye)
    inv = np.swapaxes(Linv, -1, -2) @ Linv
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    return inv, logdet


def _client_sums(model: FittedModel, s2: float, G: np.ndarray, beta=None) -> list[dict]:
    """Per kind of unit and therapist group: the weighted client sums the unit algebra
    needs.

    For client rows ``c`` with working covariance ``A_c = s2 I + Z_c G Z_c'`` on their
    observed occasions: ``E'A^-1E``, ``E'A^-1 B A^-1 E``, ``T'A^-1E``, ``T'A^-1T``,
    ``tr(A^-1 B)`` and ``log|A|``. ``A_c`` depends on the attrition pattern only, so
    there are a handful of inverses; the sums over rows are matrix products over the
    stacked (row, occasion) axis, with the weights of each (kind, group) folded into
    ``E`` and ``T`` once (:func:`_stack_rows`).

    With ``beta``, ``E'A^-1 B A^-1 E`` gains each client's variance over attrition
    patterns of its contribution ``s = E'A^-1 (mu - X beta)`` to the estimating equation:
    the residual mean differs by pattern (MAR selection, and the model's mean not being
    the truth's), which adds ``sum_o P_o s_o s_o' - m m'`` with ``m = sum_o P_o s_o``.
    """
    rows = model.rows
    time = model.time
    Z = np.column_stack([np.ones_like(time), time])
    pats = rows["patterns"]  # patterns x J
    mask = pats[:, :, None] & pats[:, None, :]
    J = time.size
    A = np.where(mask, s2 * np.eye(J) + Z @ G @ Z.T, np.eye(J))
    Minv, logdet = _inv_psd(A)
    Minv = np.where(mask, Minv, 0.0)
    M = Minv[rows["pattern"]]
    E, T, B = rows["E"], rows["T"], rows["B"]
    ME = M @ E
    AE = ME.reshape(-1, E.shape[2])
    AT = (M @ T).reshape(-1, T.shape[2])
    BAE = (B @ ME).reshape(-1, E.shape[2])
    if beta is not None:
        gamma = np.zeros(E.shape[2])
        gamma[:model.p] = -beta
        gamma[model.p] = 1.0
        resid = E @ gamma  # rows x J: mu - X beta on the observed occasions
        contrib = np.einsum("cjf,cj->cf", ME, resid)  # rows x nE
    out = [{} for _ in model.kinds]
    for i, (k, g) in enumerate(rows["pairs"]):
        sl = rows["slices"][i]  # the (row, occasion) entries of this kind and group
        Ew, Tw, wr = rows["Ew"][i], rows["Tw"][i], rows["wr"][i]
        ae = AE[sl]
        ebe = (ae * wr[:, None]).T @ BAE[sl]
        if beta is not None:
            idx, w, client = rows["row_sel"][i], rows["w"][rows["row_sel"][i]], rows["client"]
            c = contrib[idx]
            # per client: its share and sum_o w_o s_o (= share x m)
            ids, inv = np.unique(client[idx], return_inverse=True)
            share = np.bincount(inv, weights=w)
            wm = np.zeros((ids.size, c.shape[1]))
            np.add.at(wm, inv, w[:, None] * c)
            ebe = ebe + (c * w[:, None]).T @ c - (wm / share[:, None]).T @ wm
        out[k][g] = {
            "EAE": Ew.T @ ae, "EBE": ebe, "TAE": Tw.T @ ae,
            "TAT": Tw.T @ AT[sl],
            "trAB": float(np.sum(Minv * rows["Bsum"][i].transpose(0, 2, 1))),
            "logdet": float(rows["wpat"][i] @ logdet)}
    return out


def _maps(model: FittedModel, kind: _Kind):
    """Selection matrices from one client's generic columns to the unit's columns.

    Yields ``(group, share, ME, MT)``: each therapist of a group takes ``share = 1/n`` of
    the group's clients; ``ME`` maps ``[X, mu, therapist, unit, periods]`` to the unit's
    ``[X, mu, therapist_1..K, unit, periods]``, ``MT`` maps the truth's ``[unit,
    therapist, periods, level_1..3]`` to ``[unit, therapist_1..K, periods, level (K x 3)]``.
    """
    p1, K, nPw, nP = model.p + 1, sum(kind.therapists), model.n_periods_work, model.n_periods
    nE, nT = p1 + 2 + nPw, 2 + nP + 3
    nEf, nTf = p1 + K + 1 + nPw, 1 + K + nP + 3 * K
    first = np.cumsum((0,) + kind.therapists)
    groups = set(np.unique(kind.group).tolist())
    for g in sorted(groups):
        n_g = kind.therapists[g] if g >= 0 else 1
        for i in range(n_g):
            ME = np.zeros((nE, nEf))
            MT = np.zeros((nT, nTf))
            ME[np.arange(p1), np.arange(p1)] = 1.0
            ME[p1 + 1, p1 + K] = 1.0
            ME[p1 + 2 + np.arange(nPw), p1 + K + 1 + np.arange(nPw)] = 1.0
            MT[0, 0] = 1.0
            MT[2 + np.arange(nP), 1 + K + np.arange(nP)] = 1.0
            if g >= 0:
                tau = first[g] + i
                ME[p1, p1 + tau] = 1.0
                MT[1, 1 + tau] = 1.0
                MT[2 + nP + np.arange(3), 1 + K + nP + 3 * tau + np.arange(3)] = 1.0
            yield g, 1.0 / n_g, ME, MT


def _unit_terms(kind: _Kind, sums: dict, model: FittedModel, d_work: np.ndarray) -> dict:
    """``F = W'V^-1W``, the meat ``W'V^-1 Sigma V^-1 W``, ``log|V|`` and
    ``tr(V^-1 Sigma)`` of ``kind.count`` units, summed over the size distribution."""
    p1, K = model.p + 1, sum(kind.therapists)
    nEf = p1 + K + 1 + model.n_periods_work
    nTf = 1 + K + model.n_periods + 3 * K
    EAE, EBE = np.zeros((nEf, nEf)), np.zeros((nEf, nEf))
    TAE, TAT = np.zeros((nTf, nEf)), np.zeros((nTf, nTf))
    trAB = logdetA = 0.0
    for g, share, ME, MT in kind.maps:
        s = sums[g]
        EAE += share * ME.T @ s["EAE"] @ ME
        EBE += share * ME.T @ s["EBE"] @ ME
        TAE += share * MT.T @ s["TAE"] @ ME
        TAT += share * MT.T @ s["TAT"] @ MT
        trAB += share * s["trAB"]
        logdetA += share * s["logdet"]
    d_true = np.concatenate([[model.d_true[0]], [model.d_true[1]] * K,
                             model.d_true[2:2 + model.n_periods], np.ones(3 * K)])
    n = model.sizes[:, None, None]
    iw, iz = slice(0, p1), slice(p1, nEf)
    d = np.sqrt(d_work)
    Q = np.eye(len(d)) + n * (d[:, None] * EAE[iz, iz] * d[None, :])
    Qinv, logQ = _inv_psd(Q)
    R = d[:, None] * Qinv * d[None, :]  # (D^-1 + Z'A^-1Z)^-1, without inverting D
    K_ = n * EAE[iz, iw]
    RK = R @ K_
    F = n * EAE[iw, iw] - np.swapaxes(K_, 1, 2) @ RK
    cross = n * EBE[iw, iz] @ RK
    own = (n * EBE[iw, iw] - cross - np.swapaxes(cross, 1, 2)
           + np.swapaxes(RK, 1, 2) @ (n * EBE[iz, iz]) @ RK)
    ZtP = n * TAE[:, iw] - (n * TAE[:, iz]) @ RK
    meat = own + np.swapaxes(ZtP, 1, 2) @ (d_true[:, None] * ZtP)
    TZ = n * TAE[:, iz]
    ZtVZt = n * TAT - TZ @ R @ np.swapaxes(TZ, 1, 2)
    trace = (n[:, 0, 0] * trAB - np.einsum("nab,ba->n", R, EBE[iz, iz]) * n[:, 0, 0]
             + np.einsum("a,naa->n", d_true, ZtVZt))
    logdet = n[:, 0, 0] * logdetA + logQ
    prob = model.size_prob * kind.count
    return {"F": np.tensordot(prob, F, 1), "meat": np.tensordot(prob, meat, 1),
            "logdet": float(prob @ logdet), "trace": float(prob @ trace)}


def fitted_model(sc) -> FittedModel:
    """The expected design, true moments and working model of an ORS scenario."""
    if sc.outcome.kind != "ors":
        raise PowerInputError("the fitted-model power needs an ORS outcome "
                              "(the REML estimators fit Gaussian scores)")
    design = expected_design(sc)
    sw = sc.design.kind == "stepped_wedge"
    t = design.time
    J = t.size
    all_periods = np.unique(np.concatenate([
        np.floor((u.start[:, None] + design.months[None, :]) / design.period_months).ravel()
        for u in design.units]).astype(int))
    nP = len(all_periods)
    nPw = nP if sw and nP > 1 else 0
    if sw:
        names = (["Intercept"] + [f"period[{lv}]" for lv in all_periods[1:]]
                 + ["time", "exposure", "exposure:time"])
    else:
        names = ["Intercept", "time", "arm", "arm:time"]
    p = len(names)
    vc = variance_components(sc.outcome)
    kinds = []
    itt_num = itt_den = latent_num = 0.0
    selection = selection_model(sc, design)
    masks = attrition_patterns(sc, 0)[0]  # complete, then leaving at each follow-up
    n_leave = len(masks) - 1
    client_offset = 0
    for u in design.units:
        mom = client_moments(sc, design, u, selection)
        per = np.floor((u.start[:, None] + design.months[None, :]) / design.period_months)
        onehot = (per[:, :, None] == all_periods[None, None, :]).astype(float)  # c x J x nP
        n_c = len(u.start)
        e = u.exposure.astype(float)[:, None] * np.ones(J)
        tt = np.broadcast_to(t, (n_c, J))
        one = np.ones((n_c, J))
        if sw:
            X = np.concatenate([one[:, :, None], onehot[:, :, 1:],
                                np.stack([tt, e, e * tt], axis=2)], axis=2)
        else:
            X = np.stack([one, tt, e, e * tt], axis=2)
        has_t = (u.group >= 0).astype(float)[:, None] * one
        sh = mom["shared"]
        d_true = np.concatenate([[sh["unit"], sh["therapist"]], [sh["unit_period"]] * nP,
                                 np.ones(3)])
        rows = {k: [] for k in ("E", "T", "B", "obs", "w", "group", "client")}
        # rows: each kind of client x attrition pattern, with the moments of its class
        # (completes: A = 0; leaves at a follow-up drawn uniformly: A = 1)
        for i_pat, mask in enumerate(masks):
            A = 0 if i_pat == 0 else 1
            prob = mom["prob"][:, A] / (1 if A == 0 else n_leave)
            parts = [X, mom["mean"][:, A, :, None], has_t[:, :, None], one[:, :, None]]
            if nPw:
                parts.append(onehot)
            pin = mom["inside"][:, A]
            delta = (np.sqrt(mom["lev_prob"])[None, :, None]
                     * (mom["mean_lev"][:, A] - mom["mean"][:, A, None, :]))  # c x 3 x J
            T = np.concatenate([pin[:, :, None], (pin * has_t)[:, :, None],
                                pin[:, :, None] * onehot,
                                np.swapaxes(delta, 1, 2) * has_t[:, :, None]], axis=2)
            rows["E"].append(np.concatenate(parts, axis=2))
            rows["T"].append(T)
            rows["B"].append(mom["cov"][:, A] - np.einsum("caj,j,cbj->cab", T, d_true, T))
            rows["obs"].append(np.broadcast_to(mask, (n_c, J)))
            rows["w"].append(u.share * prob)
            rows["group"].append(u.group)
            rows["client"].append(client_offset + np.arange(n_c))
        client_offset += n_c
        kinds.append(_Kind(u.count, *(np.concatenate(rows[k]) for k in
                                      ("E", "T", "B", "obs", "w", "group")), u.therapists,
                           client=np.concatenate(rows["client"])))
        # the estimand: E[clip Y(1) - clip Y(0)] at the primary month over clients offered FIT
        if u.exposure.any():
            treated = np.einsum("ca,caj->cj", mom["prob"], mom["mean"])  # over both classes
            untreated = client_moments(sc, design, u, exposure=0)["mean"][:, 0]
            j = design.primary
            wt = u.share * u.exposure * u.count
            itt_num += float(wt @ (treated[:, j] - untreated[:, j]))
            latent_num += float(wt @ mom["latent_effect"])
            itt_den += float(wt.sum())
    has_t = any(sum(k.therapists) > 0 for k in kinds)
    clients = float(sc.size.units * (design.sizes @ design.size_prob))
    model = FittedModel(kinds, design.sizes, design.size_prob, t, names,
                        len(names) - 1, p, nPw, d_true, nP, has_t, clients,
                        _start(kinds, t, vc, nPw),
                        {"itt_recorded": itt_num / itt_den if itt_den else 0.0,
                         "itt_latent": latent_num / itt_den if itt_den else 0.0})
    _stack_rows(model)
    return model


def _stack_rows(model: FittedModel) -> None:
    """One batch of the client rows of every kind, with what each (kind, group) needs:
    its weights folded into ``E`` and ``T``, and its ``B`` and weights summed by pattern."""
    for kind in model.kinds:
        kind.maps = list(_maps(model, kind))
    rows = {k: np.concatenate([getattr(kind, k) for kind in model.kinds])
            for k in ("E", "T", "B", "obs", "w", "client")}
    obs = rows["obs"]
    rows["E"] = rows["E"] * obs[:, :, None]
    rows["T"] = rows["T"] * obs[:, :, None]
    rows["B"] = rows["B"] * (obs[:, :, None] & obs[:, None, :])
    patterns, pattern = np.unique(obs, axis=0, return_inverse=True)
    rows["patterns"], rows["pattern"] = patterns, pattern.ravel()
    n_rows, J = obs.shape
    keys = ("pairs", "slices", "row_sel", "Ew", "Tw", "wr", "Bsum", "wpat")
    acc = {k: [] for k in keys}
    offset = 0
    E2 = rows["E"].reshape(-1, rows["E"].shape[2])
    T2 = rows["T"].reshape(-1, rows["T"].shape[2])
    for i, kind in enumerate(model.kinds):
        for g in np.unique(kind.group):
            w = np.zeros(n_rows)
            sel = np.flatnonzero(kind.group == g)
            w[offset + sel] = kind.w[sel]
            entries = ((offset + sel)[:, None] * J + np.arange(J)[None, :]).ravel()
            wr = np.repeat(w, J)[entries]
            acc["pairs"].append((i, int(g)))
            acc["slices"].append(entries)
            acc["row_sel"].append(offset + sel)
            acc["wr"].append(wr)
            acc["Ew"].append(E2[entries] * wr[:, None])
            acc["Tw"].append(T2[entries] * wr[:, None])
            onehot = (rows["pattern"][None, :] == np.arange(len(patterns))[:, None]) * w
            acc["Bsum"].append(np.tensordot(onehot, rows["B"], 1))
            acc["wpat"].append(onehot.sum(1))
        offset += kind.obs.shape[0]
    rows.update(acc)
    model.rows = rows


def _start(kinds: list[_Kind], t: np.ndarray, vc: dict, n_periods_work: int) -> np.ndarray:
    """Starting working parameters: the client covariance and residual variance fitted by
    least squares to the clients' own covariance, the shared variances from the truth."""
    J = t.size
    num = sum(k.count * np.tensordot(k.w, k.B, 1) for k in kinds)
    Bbar = num / sum(k.count * k.w.sum() for k in kinds)
    a, b = np.triu_indices(J)
    design = np.column_stack([np.ones(a.size), t[a] + t[b], t[a] * t[b], (a == b).astype(float)])
    g00, g01, g11, s2 = np.linalg.lstsq(design, Bbar[a, b], rcond=None)[0]
    s2 = max(s2, 0.1 * vc["var_resid"])
    g00 = max(g00, 0.1 * vc["var_client"])
    g11 = max(g11, 1e-2 * g00)
    g01 = float(np.clip(g01, -0.9 * math.sqrt(g00 * g11), 0.9 * math.sqrt(g00 * g11)))
    l11 = math.sqrt(g00)
    l21 = g01 / l11
    l22 = math.sqrt(max(g11 - l21**2, 1e-6))
    floor = 1e-3 * s2
    theta = [math.log(s2), math.log(l11), l21, math.log(l22),
             math.log(max(vc["var_therapist"], floor)), math.log(max(vc["var_unit"], floor))]
    if n_periods_work:
        theta.append(math.log(max(vc["var_unit_period"], floor)))
    return np.array(theta)


#: Results by scenario hash: power curves and solvers revisit scenarios.
_CACHE: dict[str, dict[str, Any]] = {}
_CACHE_SIZE = 256


def fitted_power(sc, theta=None) -> dict[str, Any]:
    """Analytic power of ``reml_trajectory`` / ``reml_stepped_wedge`` on a scenario.

    Parameters
    ----------
    sc : Scenario
        An ORS scenario.
    theta : array, optional
        Working parameters to start the search from (a previous result's ``theta``).

    Returns
    -------
    dict
        ``estimator``, ``target`` (the tested coefficient), ``power``, ``effect`` (the
        estimator's expected value, ORS points), ``itt_recorded`` (the true ITT on the
        recorded scale, ``E[clip Y(1) - clip Y(0)]`` over clients offered FIT),
        ``itt_latent`` (the same before clipping),
        ``se_model`` (the standard error the fit reports), ``se_true`` (the estimator's
        standard deviation), ``df``, ``alpha``, ``sides``, the working variance
        components REML converges to (``var_*``) and ``theta``.
    """
    key = sc.hash()
    if key in _CACHE:
        return dict(_CACHE[key])
    model = fitted_model(sc)
    theta, res = model.solve(theta)
    i = model.target
    se_m = math.sqrt(res["cov_model"][i, i])
    se_t = math.sqrt(res["cov_true"][i, i])
    effect = float(res["beta"][i])
    df = max(model.clients - model.p, 1.0)
    alpha, sides = sc.analysis.alpha, sc.analysis.sides
    G, var = res["G"], res["var"]
    out = {
        "estimator": ESTIMATOR_OF[sc.design.kind],
        "target": model.names[i],
        "effect": effect,
        "itt_recorded": model.truth["itt_recorded"],
        "itt_latent": model.truth["itt_latent"],
        "se_model": se_m,
        "se_true": se_t,
        "df": df,
        "alpha": alpha,
        "sides": sides,
        "power": power_of_test(effect, se_t, se_m, df, alpha, sides),
        "var_resid": res["sigma2"], "var_client": float(G[0, 0]),
        "var_slope": float(G[1, 1]), "cov_client_slope": float(G[0, 1]),
        "var_therapist": float(var[0]) if model.has_therapist else 0.0,
        "var_unit": float(var[1]),
        "var_unit_period": float(var[2]) if model.n_periods_work else 0.0,
        "theta": [float(x) for x in theta],
    }
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = out
    return dict(out)


def power_of_test(effect: float, sd: float, se: float, df: float, alpha: float,
                  sides: int) -> float:
    """``P(b / se > c)`` (one-sided, in the direction of ``effect``) or ``P(|b| / se > c)``
    for ``b ~ N(effect, sd^2)``, ``se`` fixed and ``c`` the t quantile on ``df``."""
    c = float(special.stdtrit(df, 1 - alpha / sides)) * se
    lam = abs(effect)
    p = float(special.ndtr((lam - c) / sd))
    if sides == 2:
        p += float(special.ndtr((-lam - c) / sd))
    return p
