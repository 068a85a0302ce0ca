"""A grey-box model of one station's homes, fitted from its own telemetry, and the supply it calls for.

Pure numpy, no I/O. One hour per step, the first-order heat balance of the homes a station serves:

    T[k+1] − T[k] = α·(Ts[k] − T[k]) + β·(To[k] − T[k]) + γ

T the homes' indoor mean, Ts the station's supply, To the outdoor temperature. Each coefficient reads as
physics: α = radiator conductance / heat capacity per hour, β = loss to outdoors / heat capacity per hour,
γ = internal gains / heat capacity per hour (°C/h). From them: the time constant τ = 1/(α + β) hours, and
at steady state T = (α·Ts + β·To + γ)/(α + β), so each supply °C is worth α/(α + β) indoor °C.

Fitting is ordinary least squares on the hourly series, with one prior row: on a station that follows its
heating curve the supply moves with the outdoor temperature, so α and β cannot be told apart from data
alone. The prior asks β/α to be the ratio the design implies (the radiators' mean water temperature
over indoor, against indoor over outdoor, at the design point); its weight is small, so it only decides
the direction the data leave open. The fit reports its error (one-step and free-run RMSE, °C), so a station whose model does not fit
keeps the curve and the indoor feedback.

``plan_supply`` is the model used predictively (receding horizon): one supply per block of ``hold_h`` hours
over the look-ahead, each within the station's range and one ``max_step_c`` from the block before, the least
that keeps every hour at its target against the outdoor forecast. Only the first block is ever sent; the
next cycle plans again from what the homes measure then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

PRIOR_WEIGHT = 1e-3  # of the data's own scale: enough to fix the unidentified direction, no more


@dataclass(frozen=True, slots=True)
class StationModel:
    """Hourly coefficients of the heat balance (see the module docstring)."""

    alpha: float  # supply coupling, 1/h
    beta: float  # loss to outdoors, 1/h
    gamma: float  # internal gains, °C/h

    @property
    def tau_h(self) -> float:
        """Time constant of the homes' indoor mean, hours."""
        return 1.0 / (self.alpha + self.beta)

    @property
    def supply_gain(self) -> float:
        """Indoor °C per supply °C at steady state."""
        return self.alpha / (self.alpha + self.beta)

    def steady_c(self, supply_c: float, outdoor_c: float) -> float:
        """Indoor mean the homes settle at under a constant supply and outdoor temperature."""
        return (self.alpha * supply_c + self.beta * outdoor_c + self.gamma) / (self.alpha + self.beta)

    def supply_for(self, indoor_c: float, outdoor_c: float) -> float:
        """The constant supply that holds ``indoor_c`` at steady state (the model's own heating curve)."""
        return ((self.alpha + self.beta) * indoor_c - self.beta * outdoor_c - self.gamma) / self.alpha

    def explain(self) -> dict[str, float]:
        return {"alpha_per_h": round(self.alpha, 5), "beta_per_h": round(self.beta, 5),
                "gamma_c_per_h": round(self.gamma, 4), "tau_h": round(self.tau_h, 1),
                "supply_gain": round(self.supply_gain, 3)}


@dataclass(frozen=True, slots=True)
class Fit:
    model: StationModel
    rmse_step_c: float  # one hour ahead
    rmse_sim_c: float  # the whole window simulated from its first hour: what planning relies on
    hours: int  # hourly transitions used

    def explain(self) -> dict[str, float]:
        return {**self.model.explain(), "rmse_step_c": round(self.rmse_step_c, 3),
                "rmse_sim_c": round(self.rmse_sim_c, 3), "fit_hours": self.hours}


class FitError(ValueError):
    """Too few usable hours, or coefficients without physical meaning."""


def simulate(model: StationModel, t0_c: float, supply_c: Array, outdoor_c: Array) -> Array:
    """The indoor mean hour by hour (len(supply)+1 values, starting at ``t0_c``)."""
    a = 1.0 - model.alpha - model.beta
    drive = model.alpha * np.asarray(supply_c, float) + model.beta * np.asarray(outdoor_c, float) + model.gamma
    n = len(drive)
    # T[k] = a^k T0 + Σ_{j<k} a^(k-1-j) drive[j], vectorised as a lower-triangular product
    k = np.arange(n + 1)
    powers = a ** np.clip(k[:, None] - 1 - np.arange(n)[None, :], 0, None)
    mask = (np.arange(n)[None, :] < k[:, None]).astype(float)
    return np.asarray(a**k * t0_c + (powers * mask) @ drive, float)


def fit_station_model(indoor_c: Array, supply_c: Array, outdoor_c: Array, prior_ratio: float,
                      min_hours: int = 24) -> Fit:
    """Least squares on consecutive hours (NaN hours break the chain and are skipped).

    ``prior_ratio`` is β/α at the design point: (design supply − design indoor) / (design indoor − design outdoor).
    """
    t = np.asarray(indoor_c, float)
    ts = np.asarray(supply_c, float)
    to = np.asarray(outdoor_c, float)
    if not (len(t) == len(ts) == len(to)):
        raise FitError("indoor, supply and outdoor series differ in length")
    if not math.isfinite(prior_ratio) or prior_ratio <= 0:
        raise FitError(f"design ratio {prior_ratio!r} must be a positive number")
    ok = np.isfinite(t[:-1]) & np.isfinite(t[1:]) & np.isfinite(ts[:-1]) & np.isfinite(to[:-1])
    n = int(ok.sum())
    if n < min_hours:
        raise FitError(f"{n} usable hours, the model needs {min_hours}")
    x = np.column_stack([ts[:-1] - t[:-1], to[:-1] - t[:-1], np.ones(len(t) - 1)])[ok]
    y = (t[1:] - t[:-1])[ok]
    scale = float(np.sqrt(np.mean(x[:, 0] ** 2 + x[:, 1] ** 2)) * np.sqrt(n))
    prior = np.array([[prior_ratio, -1.0, 0.0]]) * scale * PRIOR_WEIGHT * 10.0
    coef, *_ = np.linalg.lstsq(np.vstack([x, prior]), np.concatenate([y, [0.0]]), rcond=None)
    alpha, beta, gamma = (float(c) for c in coef)
    if not (alpha > 0 and beta > 0 and alpha + beta < 1.0):
        raise FitError(f"fitted coefficients without physical meaning (α={alpha:.4g}, β={beta:.4g})")
    model = StationModel(alpha, beta, gamma)
    rmse_step = float(np.sqrt(np.mean((x @ coef - y) ** 2)))
    return Fit(model, rmse_step, _rmse_sim(model, t, ts, to), n)


def _rmse_sim(model: StationModel, t: Array, ts: Array, to: Array) -> float:
    """Free-run error over the longest stretch with every value present."""
    good = np.isfinite(t) & np.isfinite(ts) & np.isfinite(to)
    if good.sum() < 2:
        return float("nan")
    # the longest run of consecutive good hours
    edges = np.flatnonzero(np.diff(np.concatenate([[0], good.astype(int), [0]])))
    starts, ends = edges[::2], edges[1::2]
    i = int(np.argmax(ends - starts))
    s, e = int(starts[i]), int(ends[i])
    pred = simulate(model, float(t[s]), ts[s:e - 1], to[s:e - 1])
    return float(np.sqrt(np.mean((pred - t[s:e]) ** 2)))


@dataclass(frozen=True, slots=True)
class SupplyPlan:
    supply_c: float  # the first move: within [lo, hi] and one step from the reference
    blocks_c: Array  # the whole plan, one supply per block of ``hold_h`` hours
    predicted_c: Array  # indoor mean hour by hour under the plan (hour 0 = now)
    short_h: tuple[int, ...]  # look-ahead hours the plan cannot bring to their target (bounds, steps, lag)


def block_response(model: StationModel, hours: int, hold_h: int) -> Array:
    """Hour-by-hour indoor response (hours 1..H) to 1 °C more supply in each block of ``hold_h`` hours."""
    blocks = -(-hours // hold_h)
    zero = simulate(model, 0.0, np.zeros(hours), np.zeros(hours))[1:]
    out = np.empty((hours, blocks))
    for j in range(blocks):
        pulse = np.zeros(hours)
        pulse[j * hold_h:(j + 1) * hold_h] = 1.0
        out[:, j] = simulate(model, 0.0, pulse, np.zeros(hours))[1:] - zero
    return out


def plan_supply(model: StationModel, indoor_now_c: float, outdoor_ahead_c: Array, target_ahead_c: Array,
                reference_c: float, supply_min_c: float, supply_max_c: float, max_step_c: float,
                hold_h: int = 3, tolerance_c: float = 0.02, increment_c: float = 0.1,
                base_supply_c: Array | None = None) -> SupplyPlan:
    """The least supply, block by block, that keeps every look-ahead hour at its target.

    ``outdoor_ahead_c``: the forecast for hours 0..H−1; ``target_ahead_c``: the target of hours 1..H. The supply
    is one value per block of ``hold_h`` hours (the cycle interval), inside [supply_min_c, supply_max_c], and
    each block at most ``max_step_c`` from the one before (the first from ``reference_c``, the supply the station
    was last sent) — so the plan knows that a raise now can only come down one step per cycle.

    Greedy and exact for this linear model: start from the lowest trajectory the steps allow (down one step per
    block), then for the first hour under its target raise the latest block that can still warm it (heat
    given late is lost to outdoors for fewer hours), lifting the blocks before it only as far as the step
    limit demands; an hour no allowed plan reaches is reported in ``short_h`` and left.

    With ``base_supply_c`` (the station's heating curve along the forecast, hours 0..H−1) the blocks are a shift
    of that curve rather than the supply itself: the bounds, the steps and the reference are then the shift's.
    """
    to = np.asarray(outdoor_ahead_c, float)
    target = np.asarray(target_ahead_c, float)
    h = len(to)
    if h == 0 or len(target) != h:
        raise ValueError("outdoor forecast and targets must be non-empty and of equal length")
    if supply_min_c > supply_max_c:
        raise ValueError(f"supply range {supply_min_c}..{supply_max_c} is empty")
    ref = min(max(reference_c, supply_min_c), supply_max_c)
    m = block_response(model, h, hold_h)
    base = np.zeros(h) if base_supply_c is None else np.asarray(base_supply_c, float)
    if len(base) != h:
        raise ValueError("base supply and outdoor forecast must be of equal length")
    free = simulate(model, indoor_now_c, base, to)[1:]  # the blocks at 0: the curve (or no supply), outdoors, gains
    nb = m.shape[1]
    u = np.maximum(supply_min_c, ref - max_step_c * np.arange(1, nb + 1))
    start_block = np.arange(h) // hold_h  # the block each hour's supply belongs to
    short: list[int] = []
    for _ in range(20_000):
        gap = target - (free + m @ u)
        gap[short] = 0.0
        bad = np.flatnonzero(gap > tolerance_c)
        if not len(bad):
            break
        k = int(bad[0])
        for j in range(int(start_block[k]), -1, -1):
            trial = _raised(u, j, increment_c, ref, supply_max_c, max_step_c)
            if trial is not None:
                u = trial
                break
        else:
            short.append(k)
    pred = simulate(model, indoor_now_c, base + np.repeat(u, hold_h)[:h], to)
    return SupplyPlan(float(u[0]), u, pred, tuple(i + 1 for i in sorted(short)))


def _raised(u: Array, j: int, by: float, ref: float, hi: float, step: float) -> Array | None:
    """``u`` with block ``j`` raised by ``by`` and the blocks before it lifted to keep the step limit;
    None when that breaks the range or the first block's step from ``ref``."""
    v = u.copy()
    v[j] = min(v[j] + by, hi)
    if v[j] <= u[j] + 1e-12:
        return None
    for i in range(j - 1, -1, -1):
        v[i] = max(v[i], v[i + 1] - step)
    if v[0] > ref + step + 1e-9:
        return None
    for i in range(j + 1, len(v)):  # the blocks after may not fall faster than a step either
        v[i] = max(v[i], v[i - 1] - step)
    return v
