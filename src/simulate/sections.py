"""The sections of a scenario: design, size, follow-up, outcome, effect, missingness,
compliance and analysis.

Each section is a :class:`simulate.section.Section` (unknown keys, wrong types, NaN and
infinity refused). Every default is the FIT trial's design A; each field's comment gives
its source or says that the number is a judgement (sources collected in ``docs/MODEL.md``).
:class:`simulate.scenario.Scenario` assembles them and holds the rules that span sections.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from simulate.section import Section as _Section

__all__ = [
    "Design",
    "Size",
    "Followup",
    "OrsOutcome",
    "BinaryOutcome",
    "Outcome",
    "Effect",
    "Missingness",
    "Compliance",
    "DesignPrior",
    "Analysis",
]

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
OpenRate = Annotated[float, Field(gt=0.0, lt=1.0)]


class Design(_Section):
    """How clients or units are randomized.

    Attributes
    ----------
    kind : {"individual", "cluster", "stepped_wedge"}
        ``individual``: clients randomized to FIT or usual-care therapists within units
        (design A of the FIT trial plan). ``cluster``: units randomized to FIT or usual
        care. ``stepped_wedge``: units randomized to the date they start FIT (design B).
    allocation_ratio : float
        FIT : usual care, e.g. 2.0 for the IPS pre-study's 2:1. Not used by the
        stepped wedge, where every unit crosses over.
    randomization : {"simple", "blocked", "stratified"}
        ``simple``: independent draws. ``blocked``: permuted blocks of ``block_size``
        (within unit for individual randomization). ``stratified``: units sorted by size
        and randomized within strata of adjacent sizes (cluster and stepped-wedge designs);
        for individual randomization it is blocked randomization within unit.
    block_size : int
        Size of a permuted block; must hold the allocation ratio exactly.
    steps : int
        Number of stepped-wedge steps (groups of units that cross over together).
        3-6 is typical (a judgement; Barker 2016).
    lag_months : float
        Implementation lag: clients who start within this many months after their unit's
        crossover still get usual care.
    window_periods : int or None
        Incomplete stepped wedge: a unit recruits only in the ``window_periods`` periods
        before and after its crossover. ``None`` is the complete design.
    control_clustered : bool
        Whether usual-care clients are treated by therapists (``True``) or not (the IPS
        pre-study, where only the intervention arm has employment specialists: a partially
        nested design).
    """

    kind: Literal["individual", "cluster", "stepped_wedge"] = "individual"
    allocation_ratio: float = Field(1.0, gt=0.0)
    randomization: Literal["simple", "blocked", "stratified"] = "blocked"
    block_size: int = Field(4, ge=2)
    steps: int = Field(4, ge=1)
    lag_months: float = Field(0.0, ge=0.0)
    window_periods: int | None = Field(None, ge=1)
    control_clustered: bool = True

    @property
    def treated_share(self) -> float:
        """Share allocated to FIT, ``r / (1 + r)``."""
        return self.allocation_ratio / (1.0 + self.allocation_ratio)


class Size(_Section):
    """Numbers of units, therapists and clients, and recruitment.

    Attributes
    ----------
    units : int
        Number of units (12; FIT trial plan "somewhat over ten"; range 6-30).
    clients_per_unit : float
        Mean clients recruited per unit (20; FIT trial plan).
    cluster_size_cv : float
        Coefficient of variation of clients per unit (0.3, a judgement; Eldridge 2006
        reports 0.65 for UK GP trials).
    therapists_per_unit : int
        Therapists (or employment specialists) per unit (4, a judgement).
    caseload_cap : int
        Maximum concurrent clients per therapist (15-20; IPS pre-study; Swedish
        case-management guideline).
    episode_months : float
        Length of a treatment episode, used to count concurrent caseloads (a judgement).
    recruitment_months : float
        Months over which each unit recruits (24; FIT trial plan).
    """

    units: int = Field(12, ge=1)
    clients_per_unit: float = Field(20.0, gt=0.0)
    cluster_size_cv: float = Field(0.3, ge=0.0, le=2.0)
    therapists_per_unit: int = Field(4, ge=1)
    caseload_cap: int = Field(20, ge=1)
    episode_months: float = Field(6.0, gt=0.0)
    recruitment_months: float = Field(24.0, gt=0.0)


class Followup(_Section):
    """When clients are measured.

    Attributes
    ----------
    months : list of float
        Months since the client's start, strictly increasing, starting at 0 (baseline).
        FIT: 0, 1, 3, 6, 12 (FIT trial plan). IPS: 0, 6, 12, 18 (IPS pre-study).
    primary_month : float or None
        The primary time point; one of ``months``. ``None`` means the last.
    period_months : float
        Length of a calendar period, used for secular trends, stepped-wedge steps and
        period effects (a judgement).
    """

    months: list[float] = Field(default_factory=lambda: [0.0, 1.0, 3.0, 6.0, 12.0])
    primary_month: float | None = None
    period_months: float = Field(6.0, gt=0.0)

    @model_validator(mode="before")
    @classmethod
    def _default_primary(cls, data: Any) -> Any:
        # resolve "the last occasion" up front so equal scenarios hash equally
        if isinstance(data, dict) and data.get("primary_month") is None:
            months = data.get("months", [0.0, 1.0, 3.0, 6.0, 12.0])
            if isinstance(months, list) and months:
                data = {**data, "primary_month": months[-1]}
        return data

    @field_validator("months")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if len(v) < 2:
            raise ValueError("needs at least two occasions (baseline and one follow-up)")
        if v[0] != 0:
            raise ValueError("must start at 0 (baseline)")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"must be strictly increasing, got {v}")
        return v

    @model_validator(mode="after")
    def _primary_in_months(self) -> Followup:
        if self.primary_month is not None and self.primary_month not in self.months:
            raise ValueError(
                f"primary_month={self.primary_month} must be one of months {self.months}"
            )
        if self.primary_month == 0:
            raise ValueError("primary_month must be a follow-up, not baseline (0)")
        return self

    @property
    def primary(self) -> float:
        """The primary month, resolving ``None`` to the last occasion."""
        return self.months[-1] if self.primary_month is None else self.primary_month


class _Variance(_Section):
    unit_icc: float = Field(0.02, ge=0.0, lt=1.0)
    therapist_icc: float = Field(0.05, ge=0.0, lt=1.0)
    client_icc: float = Field(0.45, ge=0.0, lt=1.0)
    cluster_autocorrelation: float = Field(0.8, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _shares_below_one(self) -> _Variance:
        total = self.unit_icc + self.therapist_icc + self.client_icc
        if total >= 1.0:
            raise ValueError(
                "unit_icc + therapist_icc + client_icc must be below 1 (the rest is "
                f"occasion-level noise), got {total:.3g}"
            )
        return self


class OrsOutcome(_Variance):
    """ORS (Outcome Rating Scale, 0-40) trajectories.

    Attributes
    ----------
    intake_mean : float
        Mean ORS at intake (18; OpenFIT, range 16-19).
    sd : float
        Total SD of ORS at intake; the unit for the effect size d (7.5; a judgement, 7-8).
    mean_change : float
        Mean improvement by the primary month for on-track clients under usual care,
        log-linear in time (a judgement; most change is early, Stulz 2013).
    not_on_track_share : float
        Share of clients who are not on track (0.30, inferred; Lambert).
    not_on_track_change : float
        Mean change by the primary month for not-on-track clients (0: no progress).
    slope_sd : float
        SD of client random slopes, in ORS points of change by the primary month.
    unit_icc, therapist_icc, client_icc : float
        Shares of the intake variance at unit (0.02; Firth 2019), therapist (0.05; Johns
        2019) and client level (0.45, a judgement matching test-retest .5-.8).
    cluster_autocorrelation : float
        Correlation of a unit's effect between calendar periods (0.8, a judgement).
    secular_trend : float
        Change in ORS per calendar year common to both arms (a judgement).
    cutoff : float
        Clinical cutoff (25 for adults, 32 for children; ICCE/OpenFIT).
    reliability : float
        Reliability used in the reliable change index (0.87; ORS alpha .87-.96).
    srs_mean, srs_sd : float
        Latent SRS mean and SD before the ceiling at 40 (cutoff 36; Duncan 2003).
    srs_ors_correlation : float
        Correlation of latent SRS with ORS (0.29; Meier & Feeley 2022).
    """

    kind: Literal["ors"] = "ors"
    intake_mean: float = Field(18.0, ge=0.0, le=40.0)
    sd: float = Field(7.5, gt=0.0)
    mean_change: float = 6.0
    not_on_track_share: Rate = 0.30
    not_on_track_change: float = 0.0
    slope_sd: float = Field(3.0, ge=0.0)
    secular_trend: float = 0.5
    cutoff: float = Field(25.0, ge=0.0, le=40.0)
    reliability: float = Field(0.87, gt=0.0, lt=1.0)
    srs_mean: float = Field(37.0, ge=0.0, le=45.0)
    srs_sd: float = Field(3.5, gt=0.0)
    srs_ors_correlation: float = Field(0.29, ge=-1.0, le=1.0)


class BinaryOutcome(_Variance):
    """A binary outcome such as employment (the IPS pre-study).

    Attributes
    ----------
    baseline_rate : float
        Share with the outcome at baseline (a judgement).
    control_rate : float
        Share with the outcome at the primary month under usual care (0.20; range
        0.11-0.34).
    unit_icc, therapist_icc, client_icc : float
        Variance shares on the latent logistic scale (residual pi^2/3).
    """

    kind: Literal["binary"] = "binary"
    baseline_rate: OpenRate = 0.05
    control_rate: OpenRate = 0.20
    unit_icc: float = Field(0.02, ge=0.0, lt=1.0)
    therapist_icc: float = Field(0.05, ge=0.0, lt=1.0)
    client_icc: float = Field(0.30, ge=0.0, lt=1.0)


class DesignPrior(_Section):
    """A design prior on the effect: the distribution assurance averages power over.

    Attributes
    ----------
    distribution : {"normal"}
        The prior's family.
    mean, sd : float
        Its mean and SD, on ``d`` (ORS) or the log risk ratio (binary). ``sd = 0`` is a
        point mass at ``mean`` (assurance is then power at that effect).
    """

    distribution: Literal["normal"] = "normal"
    mean: float
    sd: float = Field(ge=0.0)


class Effect(_Section):
    """The effect of FIT for a client who takes it up from a high-fidelity therapist.

    Attributes
    ----------
    d : float
        Standardized effect on ORS at the primary month, averaged over on-track and
        not-on-track clients (0.15; de Jong 2021, Rognstad 2022).
    not_on_track_d : float or None
        Effect for not-on-track clients (0.30; Rognstad 2022); on-track clients get the
        effect that keeps the average at ``d``. ``None``: the same effect for all.
    risk_ratio : float
        Binary outcome: risk ratio at the primary month (1.8; range 1.15-2.6).
    design_prior : DesignPrior or None
        The uncertainty about the effect when planning, for assurance (power averaged
        over it; O'Hagan, Stevens & Campbell 2005): on ``d`` for an ORS outcome, on the
        log risk ratio for a binary one. ``None``: no assurance can be computed.
    """

    d: float = 0.15
    not_on_track_d: float | None = 0.30
    risk_ratio: float = Field(1.8, gt=0.0)
    design_prior: DesignPrior | None = None


class Missingness(_Section):
    """Treatment dropout and study attrition.

    Attributes
    ----------
    dropout_rate : float
        Treatment dropout under usual care (0.20; Swift & Greenberg 2012: 19.7%).
    dropout_odds_ratio : float
        Odds ratio of staying in treatment under FIT (1.19 favouring FIT; de Jong 2021).
    attrition_rate : float
        Share of clients missing the primary follow-up under usual care (0.25; range
        0.07-0.35; IPS trials 27-33%).
    attrition_ratio : float
        FIT attrition as a multiple of usual-care attrition (1: no difference by arm).
    mechanism : {"mcar", "mar", "mnar"}
        What drives dropout and attrition: nothing (MCAR), the last observed score (MAR),
        or the unobserved lack of progress (MNAR).
    strength : float
        Log-odds change per SD of (lack of) progress under MAR and MNAR.
    dropout_attrition_odds_ratio : float
        Odds ratio of missing a follow-up after a treatment dropout.
    """

    dropout_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.20
    dropout_odds_ratio: float = Field(1.19, gt=0.0)
    attrition_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25
    attrition_ratio: float = Field(1.0, gt=0.0)
    mechanism: Literal["mcar", "mar", "mnar"] = "mar"
    strength: float = Field(0.5, ge=0.0)
    dropout_attrition_odds_ratio: float = Field(3.0, gt=0.0)

    @model_validator(mode="after")
    def _fit_attrition_below_one(self) -> Missingness:
        if self.attrition_rate * self.attrition_ratio >= 1.0:
            raise ValueError(
                "attrition_rate * attrition_ratio must be below 1, got "
                f"{self.attrition_rate} * {self.attrition_ratio}"
            )
        return self


class Compliance(_Section):
    """Client uptake and therapist fidelity.

    Attributes
    ----------
    uptake : float
        Share of clients offered FIT who take it up (0.8, a judgement; one-sided: usual
        care cannot get FIT).
    complier_shift : float
        How much better compliers progress, in SDs of ORS (or logits for a binary
        outcome). Non-zero makes per-protocol comparisons biased (a judgement).
    fidelity_shares : list of float
        Shares of FIT therapists at low, medium and high fidelity (0.25/0.5/0.25, a
        judgement). Must sum to 1.
    fidelity_multipliers : list of float
        Effect multiplier at each fidelity level (0/0.5/1, a judgement), non-decreasing.
    ramp_months : float
        Stepped wedge: months after crossover for fidelity to reach its level (a judgement).
    """

    uptake: Rate = 0.8
    complier_shift: float = 0.25
    fidelity_shares: list[Rate] = Field(default_factory=lambda: [0.25, 0.5, 0.25])
    fidelity_multipliers: list[Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: [0.0, 0.5, 1.0]
    )
    ramp_months: float = Field(6.0, ge=0.0)

    @field_validator("fidelity_shares")
    @classmethod
    def _shares(cls, v: list[float]) -> list[float]:
        if len(v) != 3:
            raise ValueError("needs three shares (low, medium, high)")
        if abs(sum(v) - 1.0) > 1e-9:
            raise ValueError(f"must sum to 1, got {sum(v):.6g}")
        return v

    @field_validator("fidelity_multipliers")
    @classmethod
    def _multipliers(cls, v: list[float]) -> list[float]:
        if len(v) != 3:
            raise ValueError("needs three multipliers (low, medium, high)")
        if any(b < a for a, b in zip(v, v[1:])):
            raise ValueError(f"must be non-decreasing (low <= medium <= high), got {v}")
        return v

    @property
    def mean_multiplier(self) -> float:
        """Expected fidelity multiplier of a FIT therapist."""
        return sum(s * m for s, m in zip(self.fidelity_shares, self.fidelity_multipliers))


class Analysis(_Section):
    """Settings shared by power calculations and tests.

    Attributes
    ----------
    alpha : float
        Significance level.
    sides : {1, 2}
        Two-sided tests (the default), or one-sided in the direction of benefit.
    decision_threshold : float
        Bayesian decision rule: FIT is declared better when the posterior
        P(effect > 0 | data) exceeds this (0.975, the Bayesian twin of a one-sided 2.5%
        test).
    target_width : float or None
        A target width of the 95% interval (estimand scale: ORS points, or the risk
        difference); the probability of reaching it is reported. ``None``: not reported.
    """

    alpha: OpenRate = 0.05
    sides: Literal[1, 2] = 2
    decision_threshold: OpenRate = 0.975
    target_width: float | None = Field(None, gt=0.0)


Outcome = Annotated[OrsOutcome | BinaryOutcome, Field(discriminator="kind")]
