"""The study metrics, declared once: name, label, direction, how a run's value is summarised, which probe measures
it, and what evaluating a contrast on it needs (censoring, the guard a value must pass). The analysis
(``verdicts.py``) and the report read them here instead of testing metric names.
"""

from __future__ import annotations

from dataclasses import dataclass

GENERATIVE, PREDICTIVE = "dip", "classify"  # the probes whose runs measure the generative / predictive metrics



@dataclass(frozen=True)
class Metric:
    """A metric of the study's analysis tables. ``read`` says where the cross-tab takes it from: ``unit`` (the
    per-unit scores of ``verdicts.gen_scores`` / ``pred_scores``, mean over units), ``runs`` (the probe's run
    summaries, mean over runs; those at the fixed N when ``fixed_n``) or ``last`` (the last logged value of a
    DIP curve, mean over runs). Labels and headers may hold ``{period}`` (the grid period) and ``{n}`` (the
    fixed N)."""

    name: str  # its column in the analysis tables
    label: str  # words for sentences and axes
    probe: str  # "dip" or "classify": the probe whose runs measure it
    read: str  # "unit", "runs" or "last"
    summary: str  # how a run's (or unit's) value is made
    header: str = ""  # its short header in the Markdown cross-tab ("": CSV only)
    unit: str = ""
    direction: int = 1  # +1: higher is better; -1: lower is better
    source: str = ""  # the run-table column or curve metric it is made from (default: name)
    fixed_n: bool = False  # read at the fixed training-set size N
    periodic: bool = False  # one column per grid period: NAME_p{period}
    ci: str = ""  # prefix of its bootstrap CI columns ({ci}_ci_low, {ci}_ci_high) when the cross-tab gives one
    count: str = ""  # column for the number of units behind its CI
    censored: str = ""  # column for the share of runs where it was censored at the run's length
    contrast: str = ""  # its name in a claim's contrasts and the verdict tables ("": not tested by contrasts)
    guard: str = ""  # what a contrast's value must pass to decide: "peak" (every run reached its peak, else
    #   truncated), "budget" (the same verdict at twice the training budget, else budget-sensitive), "" (none)

    def __post_init__(self):
        if not self.source:
            object.__setattr__(self, "source", self.name)

    def column(self, period: int) -> str:
        """Its cross-tab column (with the grid period for a periodic metric)."""
        return f"{self.name}_p{period}" if self.periodic else self.name


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("gen_score", "generative score (gain_db on the primary task, dB)", GENERATIVE, "unit",
           "max over steps of psnr_gt minus the corrupted input's psnr (gain_db) of one task's (image, seed) run; "
           "tasks are never averaged",
           header="gen score (dB)", unit="dB", source="gain_db", ci="gen", count="n_gen_units", contrast="gain_db",
           guard="peak"),
    Metric("gap_area", "positive gap area (dB*steps)", GENERATIVE, "unit",
           "area (trapezoid over the logged steps) of the positive part of the gap psnr_gt - psnr_obs",
           header="gap area", unit="dB*steps"),
    Metric("gap_negative_step", "step where the gap turns negative (censored at the stop)", GENERATIVE, "unit",
           "first step where psnr_gt - psnr_obs < 0 after being >= 0 and stays so for the gap window; when it "
           "never does (censored), the last step at which such a crossing could still have been seen: the stop "
           "(or collapse) - gap window + 1",
           header="gap<0 step (censored)", unit="steps", censored="gap_negative_censored", contrast="gap_time"),
    Metric("pred_acc", "test accuracy at fixed N", PREDICTIVE, "unit", "final test accuracy of the run at N",
           header="acc @N={n}", source="final_test_acc", fixed_n=True, ci="pred", count="n_seeds", contrast="pred_acc",
           guard="budget"),
    Metric("auc", "sample-efficiency AUC", PREDICTIVE, "unit",
           "a seed's final test accuracy averaged over log N (trapezoid)", header="AUC", ci="auc", contrast="auc",
           guard="budget"),
    Metric("shift_consistency", "shift consistency (circular shifts)", PREDICTIVE, "runs",
           "share of eval images whose top-1 prediction agrees between two random circular shifts",
           header="shift cons.",
           source="shift_consistency_circular", fixed_n=True),
    Metric("shift_consistency_padded", "shift consistency (zero-padded shifts)", PREDICTIVE, "runs",
           "share of eval images whose top-1 prediction agrees between two random zero-padded shifts",
           fixed_n=True),
    Metric("ece", "expected calibration error", PREDICTIVE, "runs", "ECE of the final model on the eval split",
           header="ECE", direction=-1, fixed_n=True),
    Metric("grid_energy", "grid energy, period {period} (share; / clean's when known)", GENERATIVE, "last",
           "share of the output's spectral power on the period's grid frequencies (/ the clean image's share "
           "when known), at the last logged step",
           header="grid energy p{period}", direction=-1, periodic=True),
    Metric("boundary_jump", "boundary jump, period {period} (across / inside patches)", GENERATIVE, "last",
           "mean neighbour difference across patch boundaries over that inside patches, at the last logged step",
           header="boundary jump p{period}", direction=-1, periodic=True),
)}


def declared(probe: str | None = None, read: str | None = None) -> list[Metric]:
    """The declared metrics of ``probe`` read as ``read`` (None: any), in declaration order."""
    return [m for m in METRICS.values() if probe in (None, m.probe) and read in (None, m.read)]


def by_contrast() -> dict[str, Metric]:
    """{name a contrast gives: its declared metric} for the metrics claims test (gain_db, gap_time, pred_acc, auc)."""
    return {m.contrast: m for m in METRICS.values() if m.contrast}
