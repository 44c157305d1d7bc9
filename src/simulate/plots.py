"""Pictures of a simulated trial: the design, cluster sizes, trajectories, missingness.

Each function takes a :class:`~simulate.trial.Trial` and returns a matplotlib ``Figure``,
so notebooks stay thin: they call these and show the result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "plot_schedule",
    "draw_schedule",
    "plot_allocation",
    "plot_cluster_sizes",
    "plot_trajectories",
    "summarize_trial",
    "missingness_table",
]

ARM_LABELS = {0: "usual care", 1: "FIT"}
ARM_COLORS = {"usual care": "#7f7f7f", "FIT": "#1f77b4"}


def _plt():
    import matplotlib.pyplot as plt

    return plt


def plot_schedule(trial):
    """Design as a picture: units x periods, shaded by exposure to FIT.

    Stepped wedge: the schedule (hatched cells are not recruiting in an incomplete
    design). Cluster and individual designs: the share of each unit's clients
    allocated to FIT in each calendar period.
    """
    if trial.schedule is not None:
        mat = trial.schedule.sort_values(list(trial.schedule.columns), ascending=False)
        title = "Stepped-wedge schedule (1 = FIT)"
        xlabel = "step period"
    else:
        c = trial.data.drop_duplicates("client")
        mat = c.pivot_table(index="unit", columns="step_period", values="exposure", aggfunc="mean")
        title = "Share of clients allocated to FIT, by unit and start period"
        xlabel = "calendar period of start"
    return draw_schedule(mat, title, xlabel, [f"unit {u}" for u in mat.index])


def draw_schedule(mat: pd.DataFrame, title: str, xlabel: str, labels=None):
    """Draw a units x periods matrix of exposure (0-1; NaN hatched as not recruiting).

    Parameters
    ----------
    mat : pandas.DataFrame
        One row per unit, one column per period.
    title, xlabel : str
    labels : list of str, optional
        Row labels; default the index.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    labels = [str(u) for u in mat.index] if labels is None else labels
    wide = max((len(x) for x in labels), default=0)  # room for long unit names
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * mat.shape[1] + 0.06 * max(0, wide - 7),
                                    0.9 + 0.28 * mat.shape[0]))
    im = ax.imshow(mat.to_numpy(dtype=float), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(mat.shape[1]), mat.columns)
    ax.set_yticks(range(mat.shape[0]), labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    missing = np.isnan(mat.to_numpy(dtype=float))
    for i, j in zip(*np.nonzero(missing)):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", lw=0))
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def plot_allocation(trial):
    """Clients per therapist, by unit and arm (therapists nested in arms or in units)."""
    plt = _plt()
    c = trial.data.drop_duplicates("client").assign(arm=lambda d: d["exposure"].map(ARM_LABELS))
    counts = c.groupby(["unit", "therapist", "arm"]).size().rename("clients").reset_index()
    counts["who"] = np.where(counts["therapist"] < 0, "no therapist", "therapist")
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for arm, g in counts.groupby("arm"):
        jitter = 0.15 if arm == "FIT" else -0.15
        ax.scatter(g["unit"] + jitter, g["clients"], label=arm, color=ARM_COLORS[arm],
                   s=28, alpha=0.8)
    ax.set_xlabel("unit")
    ax.set_ylabel("clients per therapist")
    ax.set_title("Allocation: each dot is one therapist's caseload")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_cluster_sizes(trial):
    """Clients recruited per unit, split by arm or exposure."""
    plt = _plt()
    c = trial.data.drop_duplicates("client").assign(arm=lambda d: d["exposure"].map(ARM_LABELS))
    tab = c.groupby(["unit", "arm"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(8, 3))
    bottom = np.zeros(len(tab))
    for arm in [a for a in ("usual care", "FIT") if a in tab.columns]:
        ax.bar(tab.index, tab[arm], bottom=bottom, label=arm, color=ARM_COLORS[arm])
        bottom += tab[arm].to_numpy()
    mean = trial.scenario.size.clients_per_unit
    ax.axhline(mean, ls="--", color="k", lw=1, label=f"planned mean ({mean:g})")
    ax.set_xlabel("unit")
    ax.set_ylabel("clients")
    ax.set_title("Cluster sizes")
    ax.legend(frameon=False, ncol=3)
    fig.tight_layout()
    return fig


def plot_trajectories(trial, n_clients: int = 40, seed: int = 0):
    """Observed outcome trajectories by arm: a sample of clients and the arm means.

    ORS: with the clinical cutoff. Binary: the share with the outcome at each occasion.
    """
    plt = _plt()
    df = trial.data.assign(arm=lambda d: d["exposure"].map(ARM_LABELS))
    obs = df[df["observed"]]
    binary = trial.scenario.outcome.kind == "binary"
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    rng = np.random.default_rng(seed)
    for ax, (arm, g) in zip(axes, obs.groupby("arm")):
        if not binary:
            ids = rng.choice(g["client"].unique(), size=min(n_clients, g["client"].nunique()),
                             replace=False)
            for _, one in g[g["client"].isin(ids)].groupby("client"):
                ax.plot(one["month"], one["outcome"], color=ARM_COLORS[arm], alpha=0.25, lw=0.8)
        mean = g.groupby("month")["outcome"].mean()
        ax.plot(mean.index, mean.to_numpy(), color="k", lw=2.5, marker="o", label="observed mean")
        if not binary:
            cutoff = trial.scenario.outcome.cutoff
            ax.axhline(cutoff, color="firebrick", ls="--", lw=1, label=f"clinical cutoff ({cutoff:g})")
            ax.set_ylim(0, 40)
        ax.set_title(arm)
        ax.set_xlabel("months since start")
        ax.set_xticks(trial.scenario.followup.months)
    axes[0].set_ylabel("share employed" if binary else "ORS")
    axes[0].legend(frameon=False, loc="lower right")
    fig.suptitle("Outcome trajectories by arm (observed data)")
    fig.tight_layout()
    return fig


def summarize_trial(trial) -> pd.DataFrame:
    """One row per arm: clients, uptake, dropout, attrition and outcome at primary month."""
    df = trial.data
    primary = trial.scenario.followup.primary
    c = df.drop_duplicates("client").set_index("client")
    prim = df[df["month"] == primary].set_index("client")
    c = c.assign(missing_primary=~prim["observed"], outcome_primary=prim["outcome"])
    out = c.groupby(c["exposure"].map(ARM_LABELS)).agg(
        clients=("unit", "size"),
        therapists=("therapist", lambda t: t[t >= 0].nunique()),
        uptake=("uptake", "mean"),
        dropout=("dropout", "mean"),
        missing_at_primary=("missing_primary", "mean"),
        baseline_mean=("baseline", "mean"),
        primary_mean=("outcome_primary", "mean"),
    )
    out.index.name = "arm"
    return out.round(3)


def missingness_table(trial) -> pd.DataFrame:
    """Share of clients observed at each occasion, by arm."""
    df = trial.data.assign(arm=lambda d: d["exposure"].map(ARM_LABELS))
    return df.pivot_table(index="month", columns="arm", values="observed", aggfunc="mean").round(3)
