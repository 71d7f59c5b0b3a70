"""Closer to ground truth: FT and zero-shot videos scored against reference frames, and the statistics.

Each episode's ground truth is mapped to the model's output frame count and size exactly as a wrapper's
output is (``pytest_wiw.api.worldmodel.map_video``). Both videos are scored frame by frame:

- PSNR from ``pytest_wiw.checks.compare.video_diff`` (squared errors summed in int64, the mean in float64);
  identical frames score PSNR_IDENTICAL_DB instead of infinity, so means and intervals stay finite.
- SSIM from ``pytorch_msssim.ssim`` (Wang et al. 2004: 11-pixel Gaussian window, sigma 1.5, K1 0.01,
  K2 0.03, on the 0..255 range), per frame, averaged over the three channels.

An episode's score is the mean over its frames; its improvement is FT minus zero-shot (higher is better
for both metrics). Over episodes: the mean improvement, a percentile bootstrap 95% interval of that mean
(BOOTSTRAP_RESAMPLES resamples of the episodes, a fixed seed: the same scores give the same interval), and
the FT win rate (episodes where the FT scores strictly higher). The check fails when a metric's whole
interval lies below minus its margin (``--wm-reference-margin``, default 0): the FT is reliably worse.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from pytest_wiw.checks.compare import video_diff
from pytest_wiw.errors import UsageError

METRICS = ("psnr", "ssim")
UNITS = {"psnr": " dB", "ssim": ""}
#: PSNR of two identical frames. Finite, so that a mean and an interval over episodes stay defined; above
#: anything two frames that differ reach in practice (one level off in every value is 48.1 dB).
PSNR_IDENTICAL_DB = 100.0
#: Resamples of the bootstrap: enough that the 2.5% and 97.5% percentiles move by well under their own
#: spread between two seeds, and fast (a few milliseconds for a handful of episodes).
BOOTSTRAP_RESAMPLES = 10_000
#: Seed of the bootstrap's generator: one set of scores always gives one interval.
BOOTSTRAP_SEED = 20261202
CONFIDENCE = 0.95
#: Below this many episodes the interval is the spread of a handful of values (3 episodes have 10 distinct
#: resample means), so a verdict on it is weak evidence whatever its sign: the message says so.
MIN_EPISODES_FOR_EVIDENCE = 4
#: Gaussian window of SSIM (Wang et al.); frames smaller than it use the largest odd window that fits.
SSIM_WINDOW = 11


def map_ground_truth(frames: np.ndarray, num_frames: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Ground-truth frames (T, 3, H, W) uint8 -> (num_frames, 3, *out_hw) uint8, as the suite maps any video."""
    import torch

    from pytest_wiw.api.worldmodel import map_video

    video = torch.from_numpy(np.ascontiguousarray(frames)).float().div(255.0)[None]
    return map_video(video, num_frames, out_hw)[0]


def psnr_per_frame(pred: np.ndarray, gt: np.ndarray) -> list[float]:
    """PSNR in dB of each frame of (T, 3, H, W) uint8 ``pred`` against ``gt`` (identical: PSNR_IDENTICAL_DB)."""
    return [min(video_diff(p, g).psnr_db, PSNR_IDENTICAL_DB) for p, g in zip(pred, gt)]


def ssim_per_frame(pred: np.ndarray, gt: np.ndarray) -> list[float]:
    """SSIM of each frame of (T, 3, H, W) uint8 ``pred`` against ``gt`` (pytorch_msssim, range 0..255)."""
    import torch
    from pytorch_msssim import ssim

    side = min(pred.shape[-2:])
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    x = torch.from_numpy(np.ascontiguousarray(pred)).double()
    y = torch.from_numpy(np.ascontiguousarray(gt)).double()
    values = ssim(x, y, data_range=255.0, size_average=False, win_size=window)
    return [float(v) for v in values]


@dataclass
class EpisodeScore:
    """Per-frame scores of one episode's FT and zero-shot videos against its ground truth."""

    episode: str
    psnr_ft: list[float]
    psnr_zero_shot: list[float]
    ssim_ft: list[float]
    ssim_zero_shot: list[float]

    def mean(self, metric: str, which: str) -> float:
        return float(np.mean(getattr(self, f"{metric}_{which}")))

    def improvement(self, metric: str) -> float:
        return self.mean(metric, "ft") - self.mean(metric, "zero_shot")

    def row(self) -> dict:
        """The episode's line of the report: mean PSNR and SSIM of each side, and who won on PSNR."""
        out = {"episode": self.episode}
        for metric in METRICS:
            out[f"{metric}_ft"] = round(self.mean(metric, "ft"), 4)
            out[f"{metric}_zero_shot"] = round(self.mean(metric, "zero_shot"), 4)
        d = self.improvement("psnr")
        out["winner"] = "FT" if d > 0 else "zero-shot" if d < 0 else "tie"
        return out


def score_episode(name: str, ft: np.ndarray, zero_shot: np.ndarray, gt: np.ndarray) -> EpisodeScore:
    """Score item 0 of (1, T, 3, H, W) FT and zero-shot outputs against the mapped (T, 3, H, W) ground truth."""
    return EpisodeScore(name, psnr_per_frame(ft[0], gt), psnr_per_frame(zero_shot[0], gt),
                        ssim_per_frame(ft[0], gt), ssim_per_frame(zero_shot[0], gt))


def bootstrap_interval(values: list[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (episodes resampled with replacement)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


@dataclass
class MetricSummary:
    metric: str
    mean_improvement: float
    interval: tuple[float, float]
    win_rate: float
    wins: int
    episodes: int

    def describe(self) -> str:
        unit = UNITS[self.metric]
        digits = 3 if self.metric == "psnr" else 4
        lo, hi = self.interval
        return (f"{self.metric.upper()} {self.mean_improvement:+.{digits}f}{unit} "
                f"(95% interval [{lo:+.{digits}f}, {hi:+.{digits}f}]{unit}), FT wins {self.wins}/{self.episodes}")


@dataclass
class Verdict:
    """The check's outcome: which metrics say the FT is reliably worse, and whether the evidence is weak."""

    summaries: dict[str, MetricSummary]
    margins: dict[str, float]
    worse: list[str]
    weak: list[str]

    def figures(self) -> dict[str, float | int]:
        """Flat figures for the junit properties and the report."""
        out: dict[str, float | int] = {"ground_truth_episodes": next(iter(self.summaries.values())).episodes}
        for m, s in self.summaries.items():
            out[f"ground_truth_{m}_improvement"] = round(s.mean_improvement, 6)
            out[f"ground_truth_{m}_ci_low"] = round(s.interval[0], 6)
            out[f"ground_truth_{m}_ci_high"] = round(s.interval[1], 6)
            out[f"ground_truth_{m}_win_rate"] = round(s.win_rate, 4)
        return out

    def describe(self) -> str:
        """Every metric's figures and, when it is, why the evidence is weak: the pass message."""
        n = next(iter(self.summaries.values())).episodes
        text = f"{n} episode(s): " + "; ".join(s.describe() for s in self.summaries.values())
        tolerated = [f"{m.upper()} ({self.margins.get(m, 0.0):g}{UNITS[m]})" for m, s in self.summaries.items()
                     if s.interval[1] < 0 and m not in self.worse]
        if tolerated:
            text += f". Reliably worse than zero-shot, within the margin: {', '.join(tolerated)}"
        if self.weak:
            text += f". Weak evidence: {'; '.join(self.weak)}"
        return text

    def failure(self, ft: str, base: str) -> str:
        """The fail message: each metric on which the FT is reliably worse, with its interval and margin."""
        parts = []
        for metric in self.worse:
            s, margin = self.summaries[metric], self.margins.get(metric, 0.0)
            bound = "zero" if margin == 0 else f"-{margin:g}{UNITS[metric]} (the margin)"
            parts.append(f"{s.describe()}: the whole interval lies below {bound}")
        return (f"{ft} is further from the ground truth than its zero-shot base {base}: " + "; ".join(parts)
                + f" (over {next(iter(self.summaries.values())).episodes} episode(s); --wm-reference-margin "
                "sets how far below zero still passes). The fine-tune moves the model away from the reference "
                "frames: check that the episodes are of the task and data it was trained on, that the base is "
                "the model it started from, and the training run itself")

    def to_dict(self) -> dict:
        return {"summaries": {m: {**asdict(s), "interval": list(s.interval)} for m, s in self.summaries.items()},
                "margins": self.margins, "worse": self.worse, "weak": self.weak}


def judge(scores: list[EpisodeScore], margins: dict[str, float]) -> Verdict:
    """Mean improvement, bootstrap interval and win rate per metric; worse where a whole interval lies
    below minus the metric's margin; weak evidence where an interval straddles zero or episodes are few."""
    n = len(scores)
    summaries, worse, weak = {}, [], []
    for metric in METRICS:
        diffs = [s.improvement(metric) for s in scores]
        wins = sum(d > 0 for d in diffs)
        summary = MetricSummary(metric, float(np.mean(diffs)), bootstrap_interval(diffs), wins / n, wins, n)
        summaries[metric] = summary
        lo, hi = summary.interval
        if hi < -margins.get(metric, 0.0):
            worse.append(metric)
        elif lo <= 0 <= hi:
            weak.append(f"the {metric.upper()} interval includes zero")
    if n < MIN_EPISODES_FOR_EVIDENCE:
        weak.insert(0, f"only {n} episode(s) (fewer than {MIN_EPISODES_FOR_EVIDENCE})")
    return Verdict(summaries, dict(margins), worse, weak)


def parse_margins(value: str) -> dict[str, float]:
    """``--wm-reference-margin``: one number for every metric, or ``psnr=0.5,ssim=0.01`` (others stay 0)."""
    margins = {m: 0.0 for m in METRICS}
    text = str(value).strip()
    try:
        if "=" not in text:
            number = float(text)
            margins = {m: number for m in METRICS}
        else:
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, _, raw = part.partition("=")
                key = key.strip().lower()
                if key not in METRICS:
                    raise UsageError(f"--wm-reference-margin {value!r}: unknown metric {key!r}; metrics: "
                                     f"{', '.join(METRICS)}")
                margins[key] = float(raw)
    except ValueError:
        raise UsageError(f"--wm-reference-margin {value!r}: expected a number, or METRIC=NUMBER pairs "
                         f"({', '.join(METRICS)}), e.g. psnr=0.5,ssim=0.01") from None
    if any(not math.isfinite(v) or v < 0 for v in margins.values()):
        raise UsageError(f"--wm-reference-margin {value!r}: margins are non-negative numbers")
    return margins
