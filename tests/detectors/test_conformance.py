"""One behaviour suite for every detector, whatever its family (river/PyOD-style conformance).

Discovery: every class in the detector packages that implements the `Detector`
protocol must be built by one of the factories below, so a new detector cannot
skip these checks.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
import pkgutil
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from core.contracts import FeatureVector
from core.detection import Detector, FeatureBatch, Thresholds
from core.settings import load_settings
from detectors import statistical_detectors
from rules import pack_detectors
from tests.detectors.factories import labelled_batch, vector
from tests.ml.factories import ml_detectors

SETTINGS = load_settings(environment="test")
DETECTOR_PACKAGES = ("detectors", "rules")

FACTORIES: list[Callable[[], list[Detector]]] = [
    lambda: list(statistical_detectors(settings=SETTINGS)),
    ml_detectors,
    lambda: list(pack_detectors()),
]


def all_detectors() -> list[Detector]:
    return [detector for factory in FACTORIES for detector in factory()]


def _detector_classes() -> Iterator[type]:
    for package_name in DETECTOR_PACKAGES:
        package = importlib.import_module(package_name)
        for module_info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            module = importlib.import_module(module_info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ != module.__name__ or inspect.isabstract(cls) or cls.__name__.startswith("_"):
                    continue
                if all(hasattr(cls, attr) for attr in ("score", "explain")) and "family" in _fields(cls):
                    yield cls


def _fields(cls: type) -> set[str]:
    names = set(getattr(cls, "__dataclass_fields__", {})) | set(vars(cls))
    for base in cls.__mro__:
        names |= set(getattr(base, "__annotations__", {}))
    return names


def test_every_detector_class_is_covered_by_a_factory() -> None:
    built = {type(d) for d in all_detectors()}
    missing = {cls.__qualname__ for cls in _detector_classes()} - {cls.__qualname__ for cls in built}
    assert not missing, f"detectors without conformance coverage: {sorted(missing)}"


def _ids(detectors: list[Detector]) -> list[str]:
    return [f"{d.family.value}:{d.name}" for d in detectors]


DETECTORS = all_detectors()


@pytest.fixture(scope="module")
def labelled() -> tuple[list[FeatureVector], list[bool]]:
    return labelled_batch(seed=11, size=300)


@pytest.mark.parametrize("detector", DETECTORS, ids=_ids(DETECTORS))
def test_implements_the_protocol(detector: Detector) -> None:
    assert isinstance(detector, Detector)
    assert detector.name and detector.version


@pytest.mark.parametrize("detector", DETECTORS, ids=_ids(DETECTORS))
def test_scores_have_one_bounded_entry_per_row(
    detector: Detector, labelled: tuple[list[FeatureVector], list[bool]]
) -> None:
    batch = FeatureBatch(labelled[0])
    scores = detector.score(batch)
    assert scores.raw.shape == scores.normalised.shape == (len(batch),)
    judged = scores.normalised[~np.isnan(scores.normalised)]
    assert ((judged >= 0) & (judged <= 100)).all()


@pytest.mark.parametrize("detector", DETECTORS, ids=_ids(DETECTORS))
def test_input_is_not_mutated(detector: Detector, labelled: tuple[list[FeatureVector], list[bool]]) -> None:
    vectors = labelled[0]
    snapshot = copy.deepcopy([v.model_dump() for v in vectors])
    batch = FeatureBatch(vectors)
    detector.score(batch)
    for index, _ in Thresholds().decide(detector.score(batch)):
        detector.explain(batch, index)
    assert [v.model_dump() for v in vectors] == snapshot


@pytest.mark.parametrize("detector", DETECTORS, ids=_ids(DETECTORS))
def test_deterministic(detector: Detector, labelled: tuple[list[FeatureVector], list[bool]]) -> None:
    first = detector.score(FeatureBatch(labelled[0]))
    second = detector.score(FeatureBatch(labelled[0]))
    np.testing.assert_array_equal(first.normalised, second.normalised)


@pytest.mark.parametrize("detector", DETECTORS, ids=_ids(DETECTORS))
def test_tolerates_missing_features(detector: Detector) -> None:
    batch = FeatureBatch([vector(index=i, amount=50.0 + i, history=None) for i in range(20)])
    scores = detector.score(batch)
    assert scores.normalised.shape == (20,)


@pytest.mark.parametrize("detector", DETECTORS, ids=_ids(DETECTORS))
def test_every_flag_has_a_readable_reason(detector: Detector, labelled: tuple[list[FeatureVector], list[bool]]) -> None:
    batch = FeatureBatch(labelled[0])
    decided = Thresholds().decide(detector.score(batch))
    for index, _ in decided:
        reasons = detector.explain(batch, index)
        assert reasons, f"row {index} flagged without a reason"
        assert all(len(r.text) > 10 for r in reasons)


@pytest.mark.parametrize("detector", DETECTORS, ids=_ids(DETECTORS))
def test_pickles(detector: Detector, labelled: tuple[list[FeatureVector], list[bool]]) -> None:
    clone = pickle.loads(pickle.dumps(detector))
    batch = FeatureBatch(labelled[0])
    np.testing.assert_array_equal(clone.score(batch).normalised, detector.score(batch).normalised)
