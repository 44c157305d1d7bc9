"""The ``economics:`` section of a scenario: every input of the economic consequence analysis.

The analysis itself (value of a month of employment, incremental net benefit, the
acceptability curve, the value of information) is in :mod:`models.economics`; this module
only holds and validates its inputs. Each field's comment gives its source or says that
the number is a judgement. The sources:

- the IPS pre-study plan (RISE 2022, section "Ekonomisk konsekvensanalys"): the value of
  one extra month of employment = employment extent x mean monthly wage x (1 + employer
  contributions) x (1 - wage-subsidy rate); the alternative that values worked hours at
  an assumed minimum wage of 129 SEK per hour, written down for a work capacity reduced
  by "drygt 70 procent";
- Holmås TH, Monstad K, Reme SE (2021), Regular employment for people with mental
  illness - an evaluation of the individual placement and support programme, Soc Sci
  Med 270:113691: 0.245, 0.465 and 0.55 more months in regular employment in years 1, 2
  and 3 (the reference effect the plan cites);
- the Swedish statutory employer contributions (arbetsgivaravgifter), 31.42% in 2024;
- the Swedish Dental and Pharmaceutical Benefits Agency's (TLV) guideline discount rate,
  3% a year.

Examples
--------
>>> from simulate.economics import Economics
>>> Economics().employer_contributions
0.3142
>>> Economics(horizon_years=5)
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for Economics
...
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from simulate.section import Section

__all__ = ["Economics", "FULL_TIME_HOURS_PER_MONTH"]

#: Full-time hours in a month: 40 hours a week x 52 weeks / 12 months.
FULL_TIME_HOURS_PER_MONTH = 40.0 * 52.0 / 12.0

Share = Annotated[float, Field(ge=0.0, lt=1.0)]


class Economics(Section):
    """Inputs of the economic consequence analysis (all money in ``currency``).

    Attributes
    ----------
    valuation : {"monthly_wage", "hourly_wage"}
        How one extra month of employment is valued. ``monthly_wage``: the plan's formula,
        ``employment_extent * monthly_wage * (1 + employer_contributions) * (1 -
        wage_subsidy_rate)``. ``hourly_wage``: the plan's alternative, worked hours
        (``employment_extent * hours_per_month``) times ``hourly_wage * (1 -
        work_capacity_reduction)``, with employer contributions.
    employment_extent : float
        Share of full time the new jobs have (0.5, a judgement: the plan gives none; IPS
        jobs in this group are often part time).
    monthly_wage : float
        Mean full-time monthly wage (22 360 SEK: the plan's 129 SEK per hour times
        full-time hours, 173.3 a month).
    hourly_wage : float
        Hourly wage of the hourly-wage alternative (129 SEK, the plan's assumed minimum
        wage for the group).
    hours_per_month : float
        Full-time hours a month (40 hours x 52 weeks / 12 = 173.3, a convention).
    work_capacity_reduction : float
        Share by which the hourly-wage alternative writes down the work capacity (0.70:
        the plan's "drygt 70 procent" from the earlier pre-study; the plan notes it need
        not be 70% for this group).
    employer_contributions : float
        Employer social contributions as a share of the wage (0.3142: the Swedish
        statutory rate in 2024; set the year's rate).
    wage_subsidy_rate : float
        Share of the wage paid by a wage subsidy (lönebidrag), which the monthly formula
        subtracts (0.70, a judgement: a subsidy that compensates the plan's 70% reduced
        work capacity; the plan leaves the rate open). With this default both valuations
        give the same value.
    cost_per_client : float
        Extra cost of the programme per client offered it, beyond usual care (40 000 SEK,
        a judgement: an employment specialist at about 600 000 SEK a year with employer
        contributions and overheads, 15 clients at a time (the plan's caseload cap), each
        supported for about a year).
    reference_months : list of float
        Extra months in regular employment per client in years 1, 2, 3, ... of the
        reference trial (0.245, 0.465, 0.55; Holmås et al. 2021, cited by the plan).
    effect_shape : {"reference", "constant"}
        How the effect measured at the trial's primary month carries over the years of
        ``horizon_years``: ``reference`` scales it year by year like
        ``reference_months`` (relative to the year holding the primary month; the effect
        grows as in the Norwegian trial); ``constant``: the same effect every year.
    horizon_years : int
        Years over which extra employment is counted (3: the plan's three-year study and
        the reference's three years). At most ``len(reference_months)`` with
        ``effect_shape: reference``.
    discount_rate : float
        Yearly discount rate of later years' value (0.03, TLV's guideline).
    displacement_share : float
        Share of the jobs gained that other job seekers would otherwise have had (0: the
        plan names displacement but gives no size; a judgement).
    other_value_per_month : float
        Other value per extra month employed, e.g. lower health-care use priced with unit
        costs (0: the plan suggests it but gives no costs). Transfers such as social
        assistance are not value to society and do not belong here.
    population_per_year : int
        Clients a year who would be offered the programme if adopted, for the population
        value of information (300, a judgement).
    decision_years : int
        Years the adoption decision applies to, for the population value of information
        (5, a judgement).
    currency : str
        Label of the money unit ("SEK").
    """

    valuation: Literal["monthly_wage", "hourly_wage"] = "monthly_wage"
    employment_extent: float = Field(0.5, gt=0.0, le=1.0)
    monthly_wage: float = Field(129.0 * FULL_TIME_HOURS_PER_MONTH, gt=0.0)
    hourly_wage: float = Field(129.0, gt=0.0)
    hours_per_month: float = Field(FULL_TIME_HOURS_PER_MONTH, gt=0.0, le=744.0)
    work_capacity_reduction: Share = 0.70
    employer_contributions: float = Field(0.3142, ge=0.0, le=1.0)
    wage_subsidy_rate: Share = 0.70
    cost_per_client: float = Field(40_000.0, ge=0.0)
    reference_months: list[Annotated[float, Field(ge=0.0, le=12.0)]] = Field(
        default_factory=lambda: [0.245, 0.465, 0.55], min_length=1
    )
    effect_shape: Literal["reference", "constant"] = "reference"
    horizon_years: int = Field(3, ge=1, le=50)
    discount_rate: float = Field(0.03, ge=0.0, le=0.5)
    displacement_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    other_value_per_month: float = 0.0
    population_per_year: int = Field(300, ge=0)
    decision_years: int = Field(5, ge=1, le=100)
    currency: str = Field("SEK", min_length=1, max_length=12)

    @model_validator(mode="after")
    def _horizon_within_reference(self) -> Economics:
        if self.effect_shape == "reference" and self.horizon_years > len(self.reference_months):
            raise ValueError(
                f"horizon_years ({self.horizon_years}) cannot exceed the "
                f"{len(self.reference_months)} years of reference_months with "
                "effect_shape 'reference'; add years to reference_months or use "
                "effect_shape 'constant'"
            )
        return self
