"""Observability's settings: alarm thresholds, drift schedule and limits, retraining on drift."""
from __future__ import annotations

from dataclasses import dataclass

from shared.config_reader import ConfigReader

# The drift function's period: the capture folders are hourly, and an alarm's period times its
# evaluation periods may not exceed one day, so the period is at most a day.
DRIFT_PERIODS_MINUTES = (15, 30, 60, 120, 180, 360, 720, 1440)


@dataclass(frozen=True)
class ObservabilitySettings:
    anomaly_band_width: float
    error_rate_percent: float
    drift_period_minutes: int
    drift_psi_threshold: float
    drift_min_samples: int
    drift_max_records: int
    drift_baseline_images: int
    drift_memory_mb: int
    retrain_on_drift: bool

    def __post_init__(self) -> None:
        if self.drift_period_minutes not in DRIFT_PERIODS_MINUTES:
            raise ValueError(f"drift_period_minutes must be one of {DRIFT_PERIODS_MINUTES}")


def load(reader: ConfigReader) -> ObservabilitySettings:
    return ObservabilitySettings(
        # Standard deviations of the anomaly band (CloudWatch's default is 2).
        anomaly_band_width=reader.number("anomalyBandWidth", 2.0, minimum=0.5, maximum=10.0),
        error_rate_percent=reader.number("errorRateAlarmPercent", 5.0, minimum=0.1, maximum=100.0),
        drift_period_minutes=reader.integer("driftPeriodMinutes", 60, allowed=DRIFT_PERIODS_MINUTES),
        # 0.1-0.25 is commonly read as a moderate shift, above 0.25 as a significant one.
        drift_psi_threshold=reader.number("driftPsiThreshold", 0.25, minimum=0.01, maximum=10.0),
        drift_min_samples=reader.integer("driftMinSamples", 100, minimum=1, maximum=1_000_000),
        drift_max_records=reader.integer("driftMaxRecords", 5000, minimum=10, maximum=1_000_000),
        drift_baseline_images=reader.integer("driftBaselineImages", 2000, minimum=10, maximum=1_000_000),
        drift_memory_mb=reader.integer("driftMemoryMb", 1024, minimum=256, maximum=10240),
        retrain_on_drift=reader.boolean("retrainOnDrift", False),
    )
