"""Observability's config keys: defaults, and a wrong value fails naming its key."""
from __future__ import annotations

import pytest

from ml_pipeline.observability import settings
from shared.config_reader import ConfigError, ConfigReader


class _Config:
    name = "ml-pipeline"

    def __init__(self, values: dict[str, str]):
        self.values = values

    def get(self, key: str):
        return self.values.get(key)


def load(**values: str) -> settings.ObservabilitySettings:
    return settings.load(ConfigReader(_Config(values)))


def test_defaults():
    s = load()
    assert (s.error_rate_percent, s.anomaly_band_width, s.drift_period_minutes, s.drift_psi_threshold,
            s.retrain_on_drift) == (5.0, 2.0, 60, 0.25, False)


@pytest.mark.parametrize("key, value", [
    ("driftPeriodMinutes", "45"), ("driftPsiThreshold", "0"), ("errorRateAlarmPercent", "150"),
    ("retrainOnDrift", "yes"), ("anomalyBandWidth", "wide"), ("driftMinSamples", "0"),
])
def test_a_wrong_value_names_its_key(key, value):
    with pytest.raises(ConfigError, match=f"ml-pipeline:{key}"):
        load(**{key: value})


def test_values_reach_the_settings():
    s = load(driftPeriodMinutes="360", retrainOnDrift="true", driftPsiThreshold="0.4")
    assert (s.drift_period_minutes, s.retrain_on_drift, s.drift_psi_threshold) == (360, True, 0.4)
