from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.contracts import EntityType, Severity
from core.detection import FeatureBatch, Thresholds, detect
from core.metrics import DETECTOR_SKIPPED
from core.settings import load_settings
from detectors import IqrDetector, RobustZDetector, StatisticalConfig, ZScoreDetector
from detectors.config import Band, load_statistical_config
from detectors.errors import DetectorConfigError
from detectors.statistical import normalise
from tests.detectors.factories import labelled_batch, vector

SETTINGS = load_settings(environment="test")
HISTORY = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0] * 2  # mean 100, σ ≈ 6.45; 12 points >= min_history 10


def test_zscore_flags_at_the_default_threshold_of_2_5_sigma() -> None:
    # The default warning band; the critical band (7σ) carries the queue (docs/detectors.md).
    assert SETTINGS.zscore_threshold == 2.5 and SETTINGS.zscore_critical == 7.0
    detector = ZScoreDetector(settings=SETTINGS)
    std = float(np.std(HISTORY))
    just_below, just_above = 100 + 2.4 * std, 100 + 2.6 * std
    batch = FeatureBatch(
        [
            vector(index=0, amount=just_below, history=HISTORY),
            vector(index=1, amount=just_above, history=HISTORY),
        ]
    )
    scores = detector.score(batch)
    assert scores.raw[0] == pytest.approx(2.4, abs=0.01)
    assert scores.normalised[0] < 50 <= scores.normalised[1]
    flagged = Thresholds().decide(scores)
    assert flagged == [(1, Severity.WARNING)]


def test_severity_bands_follow_threshold_and_critical() -> None:
    std = float(np.std(HISTORY))
    batch = FeatureBatch([vector(index=i, amount=100 + z * std, history=HISTORY) for i, z in enumerate([4, 8, 30])])
    decided = Thresholds().decide(ZScoreDetector(settings=SETTINGS).score(batch))
    assert [s for _, s in decided] == [Severity.WARNING, Severity.CRITICAL, Severity.CRITICAL]


def test_insufficient_history_is_not_judged_and_is_counted() -> None:
    detector = ZScoreDetector(settings=SETTINGS)
    before = DETECTOR_SKIPPED.labels(detector.name, "insufficient_history")._value.get()
    # Nine past amounts are one short of the default minimum history of ten.
    batch = FeatureBatch([vector(index=0, amount=10_000, history=HISTORY[:9]), vector(index=1, amount=5, history=None)])
    scores = detector.score(batch)
    assert np.isnan(scores.normalised).all()
    assert Thresholds().decide(scores) == []
    after = DETECTOR_SKIPPED.labels(detector.name, "insufficient_history")._value.get()
    assert after - before == 2


def test_zero_variance_history_still_flags_a_real_jump_but_not_a_cent() -> None:
    constant = [9.99] * 12
    batch = FeatureBatch(
        [vector(index=0, amount=10.00, history=constant), vector(index=1, amount=250, history=constant)]
    )
    for detector in (
        ZScoreDetector(settings=SETTINGS),
        RobustZDetector(settings=SETTINGS),
        IqrDetector(settings=SETTINGS),
    ):
        scores = detector.score(batch)
        assert np.isfinite(scores.raw).all(), detector.name
        assert [i for i, _ in Thresholds().decide(scores)] == [1], detector.name


def test_robust_z_is_not_masked_by_a_past_outlier() -> None:
    history = [50.0] * 10 + [52.0, 48.0, 51.0, 49.0] + [5_000.0]  # one old huge payment inflates mean and σ
    batch = FeatureBatch([vector(index=0, amount=400, history=history)])
    assert Thresholds().decide(ZScoreDetector(settings=SETTINGS).score(batch)) == []
    assert Thresholds().decide(RobustZDetector(settings=SETTINGS).score(batch)) == [(0, Severity.CRITICAL)]


def test_iqr_fences_are_tukeys_on_log_amounts() -> None:
    history = [float(x) for x in range(10, 110, 10)]  # q1 32.5, q3 77.5: log IQR = log(77.5 / 32.5)
    q1, q3 = 32.5, 77.5
    # A fence k IQRs above Q3 on the log scale is the amount Q3 x (Q3 / Q1)^k.
    amounts = [q3 * (q3 / q1) ** k for k in (2.9, 3.1, 6.1)]
    batch = FeatureBatch([vector(index=i, amount=a, history=history) for i, a in enumerate(amounts)])
    detector = IqrDetector(settings=SETTINGS)
    assert detector.score(batch).raw[0] == pytest.approx(2.9, abs=0.01)
    decided = Thresholds().decide(detector.score(batch))
    assert decided == [(1, Severity.WARNING), (2, Severity.CRITICAL)]


def test_robust_z_cutoffs_are_iglewicz_and_hoaglins_on_log_amounts() -> None:
    history = [float(x) for x in range(10, 110, 10)]  # median 55, log-IQR σ = log(77.5 / 32.5) / 1.349
    sigma = np.log(77.5 / 32.5) / 1.349
    amounts = [55 * np.exp(z * sigma) for z in (3.4, 3.6, 7.1)]
    batch = FeatureBatch([vector(index=i, amount=a, history=history) for i, a in enumerate(amounts)])
    detector = RobustZDetector(settings=SETTINGS)
    assert detector.score(batch).raw[0] == pytest.approx(3.4, abs=0.01)
    assert Thresholds().decide(detector.score(batch)) == [(1, Severity.WARNING), (2, Severity.CRITICAL)]


def test_log_scale_detectors_ignore_an_ordinary_heavy_tail() -> None:
    # Three times the median is ordinary for a spread-out (lognormal) habit: 1.9 robust σ on log amounts.
    history = [10.0, 14.0, 18.0, 22.0, 25.0, 30.0, 35.0, 42.0, 50.0, 60.0, 12.0, 28.0]
    batch = FeatureBatch([vector(index=0, amount=3 * 26.5, history=history)])
    for detector in (RobustZDetector(settings=SETTINGS), IqrDetector(settings=SETTINGS)):
        assert Thresholds().decide(detector.score(batch)) == [], detector.name


def test_per_tenant_thresholds_override_the_default() -> None:
    config = StatisticalConfig(tenants={"strict": {EntityType.ACCOUNT: Band(threshold=1.5)}})
    std = float(np.std(HISTORY))
    batch = FeatureBatch(
        [
            vector(index=0, amount=100 + 2 * std, history=HISTORY, tenant="acme"),
            vector(index=1, amount=100 + 2 * std, history=HISTORY, tenant="strict"),
        ]
    )
    decided = Thresholds().decide(ZScoreDetector(settings=SETTINGS, config=config).score(batch))
    assert [i for i, _ in decided] == [1]


def test_threshold_setting_is_bounded_to_1_5_to_4() -> None:
    assert load_settings(zscore_threshold=1.5).zscore_threshold == 1.5
    for bad in (1.4, 4.1):
        with pytest.raises(Exception, match="VIGIL_ZSCORE_THRESHOLD"):
            load_settings(zscore_threshold=bad)


def test_config_file_errors_name_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "thresholds.yaml"
    path.write_text("tenants:\n  acme:\n    account: {threshold: 9}\n")
    with pytest.raises(DetectorConfigError, match=r"thresholds\.yaml"):
        load_statistical_config(path)
    path.write_text("default: {threshold: 3.0}\ntenants:\n  acme:\n    merchant: {critical: 8}\n")
    config = load_statistical_config(path)
    band = config.resolve(settings=SETTINGS, tenant_id="acme", entity=EntityType.MERCHANT)
    assert (band.threshold, band.critical) == (3.0, 8.0)


def test_reasons_read_like_sentences() -> None:
    std = float(np.std(HISTORY))
    batch = FeatureBatch([vector(index=0, amount=round(100 + 6 * std, 2), history=HISTORY)])
    [anomaly] = detect(detectors=[ZScoreDetector(settings=SETTINGS)], batch=batch, thresholds=Thresholds())
    text = anomaly.reasons[0].text
    assert "σ above the usual 100.00" in text and "12 past payments of this account" in text
    assert anomaly.reasons[0].baseline == 100.0


def test_statistical_detectors_find_planted_outliers() -> None:
    vectors, labels = labelled_batch(seed=3, size=600)
    batch = FeatureBatch(vectors)
    flagged = {i for i, _ in Thresholds().decide(ZScoreDetector(settings=SETTINGS).score(batch))}
    positives = {i for i, label in enumerate(labels) if label}
    recall = len(flagged & positives) / len(positives)
    false_positive_rate = len(flagged - positives) / (len(labels) - len(positives))
    print(f"z-score on planted outliers: recall {recall:.2f}, FPR {false_positive_rate:.3f}")
    assert recall >= 0.9
    assert false_positive_rate <= 0.05


@given(
    st.lists(st.floats(min_value=-50, max_value=50, allow_nan=False), min_size=1, max_size=50),
    st.floats(min_value=1.5, max_value=4.0),
)
def test_normalisation_is_monotonic_and_bounded(deviations: list[float], threshold: float) -> None:
    values = np.sort(np.asarray(deviations))
    critical = threshold * 2
    scores = normalise(values, np.full(len(values), threshold), np.full(len(values), critical))
    assert ((scores >= 0) & (scores <= 100)).all()
    assert (np.diff(scores) >= -1e-9).all()
    at = normalise(np.array([threshold, critical]), np.full(2, threshold), np.full(2, critical))
    assert at == pytest.approx([50.0, 80.0])


QUARTILES = ("account_amount_history_q1", "account_amount_history_q3")


def test_iqr_reads_the_feature_stage_quartiles_and_judges_nothing_without_them() -> None:
    detector = IqrDetector(settings=SETTINGS)
    with_quartiles = vector(index=0, amount=400, history=HISTORY)
    assert set(QUARTILES) <= set(with_quartiles.features), "the factory must use the feature stage's names"
    without = vector(index=1, amount=400, history=HISTORY)
    without = without.model_copy(update={"features": {k: v for k, v in without.features.items() if k not in QUARTILES}})
    before = {
        reason: DETECTOR_SKIPPED.labels(detector.name, reason)._value.get()
        for reason in ("missing_feature", "zero_variance")
    }
    scores = detector.score(FeatureBatch([with_quartiles, without]))
    assert scores.normalised[0] >= 80, "400 against a 100 +- 6 history is far beyond Q3 + 3 IQR"
    assert np.isnan(scores.normalised[1]), "no quartiles: not judged"
    assert DETECTOR_SKIPPED.labels(detector.name, "missing_feature")._value.get() - before["missing_feature"] == 1
    assert DETECTOR_SKIPPED.labels(detector.name, "zero_variance")._value.get() == before["zero_variance"], (
        "a missing quartile is not a zero spread"
    )
    # The z-score does not need the quartiles; robust z derives its σ from them, so it does not judge either.
    assert ZScoreDetector(settings=SETTINGS).score(FeatureBatch([without])).normalised[0] >= 80
    assert np.isnan(RobustZDetector(settings=SETTINGS).score(FeatureBatch([without])).normalised[0])
