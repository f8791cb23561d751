"""modelhost.stats.profile: reference profiles built from training data, and live vectors
laid out on them that count batches exactly (checked against independent numpy
computations) and merge by addition (a hypothesis property)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelhost.stats.drift import column_drift
from modelhost.stats.profile import (
    ERRORS,
    FEW_VALUES,
    HEADER,
    KNOWN_CATEGORIES,
    LATENCY_BINS,
    LATENCY_EDGES_S,
    LATENCY_SUM,
    QUANTILES,
    REQUESTS,
    ROWS,
    TOP_CATEGORIES,
    CategoricalProfile,
    ColumnProfile,
    Layout,
    NumericProfile,
    Reference,
    build_reference,
    profile_column,
)

Floats = npt.NDArray[np.float64]
NAN, INF = float("nan"), float("inf")


def _rng(*seed: int) -> np.random.Generator:
    return np.random.default_rng(list(seed))


def _count(layout: Layout, columns: Mapping[str, Any], predictions: Any = None) -> Floats:
    vector = layout.empty()
    layout.add_rows(vector, columns, predictions)
    return vector


def _slots(layout: Layout, vector: Floats, name: str) -> Floats:
    assert layout.reference is not None
    column = layout.reference.feature(name)
    assert column is not None
    return layout.column_counts(vector, column)


def _positions(layout: Layout, column: ColumnProfile, *, prediction: bool = False
               ) -> list[int]:
    """Where a column's slots are in the vector (read on a vector of indices)."""
    index = np.arange(layout.size, dtype=np.float64)
    return [int(i) for i in layout.column_counts(index, column, prediction=prediction)]


def _reference_data(rows: int = 400) -> dict[str, Any]:
    rng = _rng(1)
    return {
        "num": rng.normal(0.0, 2.0, rows),
        "few": rng.integers(1, 4, rows),  # three values: categories 1.0, 2.0, 3.0
        "city": rng.choice(["paris", "rome", "oslo", "lima"], rows, p=[0.4, 0.3, 0.2, 0.1]),
        "flag": rng.random(rows) < 0.3,
    }


# --- building a reference -----------------------------------------------------------------

def test_quantiles_are_every_two_and_a_half_percent_and_finer_in_the_tails() -> None:
    assert list(QUANTILES) == sorted(set(QUANTILES)) and QUANTILES[0] == 0.0
    assert QUANTILES[-1] == 1.0
    assert {round(0.025 * i, 4) for i in range(41)} <= set(QUANTILES)
    assert {0.001, 0.005, 0.01, 0.99, 0.995, 0.999} <= set(QUANTILES)


def test_a_numeric_column_is_binned_on_its_own_quantiles() -> None:
    values = np.concatenate([_rng(2).lognormal(size=1000), [NAN, INF, -INF]])
    column = profile_column("x", values)
    assert isinstance(column, NumericProfile) and column.kind == "numeric"
    finite = values[np.isfinite(values)]
    assert column.edges == tuple(np.unique(np.quantile(finite, QUANTILES)))
    assert column.edges[0] == finite.min() and column.edges[-1] == finite.max()
    assert np.all(np.diff(column.edges) > 0)
    # numpy's histogram has the same convention: [left, right), the last bin closed.
    assert column.counts == tuple(np.histogram(finite, bins=np.array(column.edges))[0])
    assert sum(column.counts) == column.values == 1000
    assert (column.rows, column.nulls, column.distinct) == (1003, 3, 1000)
    assert column.std == pytest.approx(float(np.std(finite)), rel=1e-12)
    assert column.slots() == len(column.counts) + 5


@pytest.mark.parametrize(("values", "kind", "numeric"), [
    (np.arange(100) % FEW_VALUES, "categorical", True),  # at most 5 values: categories
    (np.arange(100) % (FEW_VALUES + 1), "numeric", None),
    (np.arange(100.0) % 3 + 0.5, "categorical", True),
    (np.array([True, False, True] * 10), "categorical", False),  # bools are categories
    (np.array(["a", "b"] * 10), "categorical", False),
    (np.array([1, "a", 2.5, None] * 5, dtype=object), "categorical", False),
    (np.array([1, 2, 3, 4, 5, 6.5, None] * 5, dtype=object), "numeric", None),
    (np.array([1, 2, None] * 5, dtype=object), "categorical", True),
    (np.array([True, False, None] * 5, dtype=object), "categorical", False),
])
def test_numeric_or_categorical(values: npt.NDArray[Any], kind: str, numeric: bool | None
                                ) -> None:
    column = profile_column("x", values)
    assert column.kind == kind
    if isinstance(column, CategoricalProfile):
        assert column.numeric is numeric
        assert all(isinstance(c, float if numeric else str) for c in column.categories)


def test_the_caller_can_force_the_kind() -> None:
    forced = profile_column("x", np.array([0.5, 1.5, 0.5]), categorical=True)
    assert isinstance(forced, CategoricalProfile) and not forced.numeric
    assert forced.categories == ("0.5", "1.5") and forced.counts == (2, 1)
    two = np.array([0.0, 1.0, 1.0, 1.0])
    binned = profile_column("x", two, categorical=False)
    assert isinstance(binned, NumericProfile)
    assert binned.edges == tuple(np.unique(np.quantile(two, QUANTILES)))
    assert binned.edges[0] == 0.0 and binned.edges[-1] == 1.0
    assert (binned.counts[0], binned.counts[-1], sum(binned.counts)) == (1, 3, 4)
    constant = profile_column("x", np.full(5, 2.5), categorical=False)
    assert isinstance(constant, NumericProfile)
    assert (constant.edges, constant.counts) == ((2.5, 2.5), (5,))  # a zero-width bin
    text = profile_column("x", np.array(["a", "b"]), categorical=False)
    assert isinstance(text, CategoricalProfile)  # strings stay categories


def test_few_numeric_values_are_counted_as_float_categories() -> None:
    column = profile_column("x", np.array([3, 1, 1, 2, 3, 3, 7, 7, 7, 7]))
    assert isinstance(column, CategoricalProfile) and column.numeric
    assert column.categories == (7.0, 3.0, 1.0, 2.0) and column.counts == (4, 3, 2, 1)
    assert (column.other, column.known, column.distinct) == (0, (), 4)


def test_nan_inf_and_none_are_nulls() -> None:
    numeric = profile_column("x", np.array([1.0, 2, 3, 4, 5, 6, 7, NAN, INF, -INF]))
    assert (numeric.rows, numeric.nulls, numeric.values) == (10, 3, 7)
    few = profile_column("x", np.array([1.0, 2.0, NAN, INF, 1.0]))
    assert isinstance(few, CategoricalProfile)
    assert (few.nulls, few.counts, few.categories) == (2, (2, 1), (1.0, 2.0))
    objects = profile_column("x", np.array(["a", None, NAN, "b", "a"], dtype=object))
    assert isinstance(objects, CategoricalProfile)
    assert (objects.nulls, objects.categories, objects.counts) == (2, ("a", "b"), (2, 1))
    boxed = profile_column("x", np.array([1.5, None, INF, 2.5, 3, 4, 5, 6], dtype=object))
    assert isinstance(boxed, NumericProfile) and (boxed.nulls, boxed.values) == (2, 6)


@pytest.mark.parametrize("values", [np.full(20, NAN), np.full(20, INF),
                                    np.array([None] * 20, dtype=object)])
def test_a_column_of_nulls_only(values: npt.NDArray[Any]) -> None:
    column = profile_column("x", values)
    assert isinstance(column, CategoricalProfile)
    assert (column.categories, column.counts, column.other, column.known) == ((), (), 0, ())
    assert (column.rows, column.nulls, column.distinct, column.values) == (20, 20, 0, 0)
    binned = profile_column("x", values, categorical=False)
    assert isinstance(binned, NumericProfile)
    assert (binned.edges, binned.counts, binned.std, binned.nulls) == ((), (), 0.0, 20)
    for profiled in (column, binned):  # live values have nowhere to go but "unseen"/"above"
        reference = Reference(rows=20, features=(profiled,), prediction=None)
        layout = Layout(reference)
        live = _slots(layout, _count(layout, {"x": [1.0, 2.0, None]}), "x")
        # nulls, other, unseen; or nulls, below, above, the two sums: "above" or "unseen"
        assert live.size == profiled.slots() and live.tolist()[:3] == [1, 0, 2]


def test_top_categories_then_other_then_known() -> None:
    """The ``TOP_CATEGORIES`` most frequent (ties by value) one by one; the rest summed in
    ``other`` and remembered in ``known``, most frequent first."""
    names = [f"k{i:03d}" for i in range(TOP_CATEGORIES + 12)]
    counts = {name: 200 - i for i, name in enumerate(names)}
    counts["k000"] = counts["k001"]  # a tie: sorted by value
    values = np.array([n for n, c in counts.items() for _ in range(c)] + [None] * 4,
                      dtype=object)
    _rng(3).shuffle(values)
    column = profile_column("x", values)
    assert isinstance(column, CategoricalProfile)
    assert column.categories == tuple(names[:TOP_CATEGORIES])
    assert column.counts == tuple(counts[n] for n in names[:TOP_CATEGORIES])
    assert column.known == tuple(names[TOP_CATEGORIES:])
    assert column.other == sum(counts[n] for n in names[TOP_CATEGORIES:])
    assert (column.distinct, column.nulls) == (len(names), 4)
    assert sum(column.counts) + column.other == column.values
    assert column.slots() == TOP_CATEGORIES + 3


def test_known_categories_are_capped() -> None:
    n = TOP_CATEGORIES + KNOWN_CATEGORIES + 20
    column = profile_column("x", np.array([f"id{i:05d}" for i in range(n)]))
    assert isinstance(column, CategoricalProfile)
    assert len(column.categories) == TOP_CATEGORIES
    assert len(column.known) == KNOWN_CATEGORIES and column.distinct == n


def _many_categories() -> npt.NDArray[np.str_]:
    """More categories than the profile remembers (top ones, then known ones)."""
    n = TOP_CATEGORIES + KNOWN_CATEGORIES + 50
    names = np.array([f"id{i:05d}" for i in range(n)])
    return np.concatenate([np.repeat(names[:TOP_CATEGORIES], 3), names])


@pytest.mark.parametrize("values", [
    _rng(4).normal(size=3000),
    np.concatenate([_rng(5).exponential(size=500), [NAN, INF]]),
    np.arange(700) % 4,
    _rng(6).choice([f"c{i}" for i in range(80)], 5000),
    np.array([True, False, None] * 400, dtype=object),
    _many_categories(),
])
def test_the_reference_data_read_back_reproduces_its_counts(values: npt.NDArray[Any]
                                                           ) -> None:
    """Counting the reference's own data on its layout gives the reference's counts, with
    nothing below or above, and as "unseen" only the categories beyond those it
    remembers (as many as it forgot); so its drift against itself is nil."""
    reference = build_reference({"x": values})
    layout = Layout(reference)
    column = reference.features[0]
    live = _slots(layout, _count(layout, {"x": values}), "x")
    assert live[0] == column.nulls
    if isinstance(column, NumericProfile):
        assert (live[1], live[-3]) == (0, 0)
        assert tuple(live[2:-3]) == column.counts
    else:
        assert tuple(live[1:]) == (*column.counts, column.other, column.forgotten)
    result = column_drift(column, live)
    forgotten = column.forgotten if isinstance(column, CategoricalProfile) else 0
    assert not result.drifted and result.out_of_range == forgotten


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        build_reference({"a": [1.0, 2.0], "b": [1.0]})


def test_predictions_are_profiled_beside_the_columns() -> None:
    data = _reference_data()
    labels = _rng(7).choice(["cat", "dog"], 400)
    classifier = build_reference(data, labels, categorical_predictions=True)
    assert isinstance(classifier.prediction, CategoricalProfile)
    assert classifier.prediction.name == "prediction" and classifier.rows == 400
    scores = _rng(8).normal(size=(400, 1))
    regression = build_reference(data, scores)
    assert isinstance(regression.prediction, NumericProfile)
    assert regression.prediction == profile_column("prediction", scores[:, 0])
    int_labels = build_reference(data, np.arange(400) % 2, categorical_predictions=True)
    assert isinstance(int_labels.prediction, CategoricalProfile)
    assert int_labels.prediction.categories == ("0", "1")
    three = build_reference(data, np.arange(400) % 3, categorical_predictions=False)
    assert isinstance(three.prediction, NumericProfile)
    assert build_reference(data, _rng(9).random((400, 3))).prediction is None
    assert build_reference(data).prediction is None
    only = build_reference({}, [1.0, 2.0, 3.0])
    assert only.rows == 3 and only.features == () and only.prediction is not None


def test_a_reference_finds_its_features_by_name() -> None:
    reference = build_reference(_reference_data())
    assert [f.name for f in reference.features] == ["num", "few", "city", "flag"]
    found = reference.feature("city")
    assert found is not None and found.name == "city"
    assert reference.feature("nope") is None


def test_to_dict_and_back_through_json_is_the_same_reference() -> None:
    data = _reference_data()
    data["empty"] = np.full(400, NAN)
    data["mixed"] = np.array([1, "1", None, 2.5] * 100, dtype=object)
    reference = build_reference(data, _rng(10).normal(size=400))
    again = Reference.from_dict(orjson.loads(orjson.dumps(reference.to_dict())))
    assert again == reference and again.digest == reference.digest
    for original, copy in zip(reference.features, again.features, strict=True):
        if isinstance(original, CategoricalProfile):
            assert isinstance(copy, CategoricalProfile)
            assert [type(c) for c in copy.categories] == [type(c) for c in original.categories]
    classifier = build_reference(data, np.arange(400) % 3, categorical_predictions=True)
    assert Reference.from_dict(orjson.loads(orjson.dumps(classifier.to_dict()))) == classifier
    bare = build_reference({"x": [1.0, 2.0]})
    assert Reference.from_dict(bare.to_dict()) == bare and bare.to_dict()["prediction"] is None


def test_an_unknown_format_is_refused() -> None:
    data = build_reference({"x": [1.0, 2.0]}).to_dict()
    with pytest.raises(ValueError, match="unknown reference profile format 99"):
        Reference.from_dict({**data, "format": 99})
    with pytest.raises(ValueError, match="None"):
        Reference.from_dict({k: v for k, v in data.items() if k != "format"})


def test_the_digest_is_stable_and_follows_the_data() -> None:
    data = _reference_data()
    digest = build_reference(data).digest
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert build_reference(_reference_data()).digest == digest  # rebuilt: same digest
    changed = {**data, "num": data["num"].copy()}
    changed["num"][0] += 1e-9
    assert build_reference(changed).digest != digest
    assert build_reference({**data, "city": data["city"][::-1]}).digest == digest
    assert build_reference(data, np.zeros(400)).digest != digest
    assert build_reference({k: data[k] for k in ("few", "num", "city", "flag")}
                           ).digest != digest  # the column order is part of the layout


# --- live vectors: the header ---------------------------------------------------------------

def test_the_header_counts_requests_errors_rows_and_latencies() -> None:
    layout = Layout(None)
    assert layout.size == HEADER and layout.digest == "none" and layout.offsets == {}
    vector = layout.empty()
    latencies = np.array([0.0, 5e-5, 1e-4, 0.0123, 0.5, 0.5, 29.99, 30.0, 120.0])
    layout.add_requests(vector, latencies_s=latencies, errors=2, rows=17)
    layout.add_requests(vector, latencies_s=np.array([0.002]), errors=0, rows=1)
    assert (vector[REQUESTS], vector[ERRORS], vector[ROWS]) == (10, 2, 18)
    assert vector[LATENCY_SUM] == pytest.approx(latencies.sum() + 0.002, rel=1e-12)
    # Independently: a latency's bin is how many edges are at or below it.
    expected = np.zeros(len(LATENCY_EDGES_S) + 1)
    for x in [*latencies, 0.002]:
        expected[sum(edge <= x for edge in LATENCY_EDGES_S)] += 1
    assert np.array_equal(vector[LATENCY_BINS:HEADER], expected)
    assert vector[LATENCY_BINS] == 2 and vector[HEADER - 1] == 2  # under 0.1 ms, 30 s on
    layout.add_rows(vector, {"x": [1.0]}, [1.0])  # no reference: nothing to count
    assert vector[HEADER:].size == 0 and vector[ROWS] == 18


def test_latency_edges_are_about_ten_a_decade_from_a_tenth_of_a_ms_to_30_s() -> None:
    edges = np.array(LATENCY_EDGES_S)
    assert edges[0] == 1e-4 and edges[-1] == 30.0
    ratios = edges[1:] / edges[:-1]
    assert np.allclose(ratios, 10 ** 0.1, rtol=0.01)


def test_the_layout_is_contiguous_and_named_by_the_reference() -> None:
    reference = build_reference(_reference_data(), _rng(11).normal(size=400))
    layout = Layout(reference)
    assert layout.digest == reference.digest
    assert reference.prediction is not None
    positions = [_positions(layout, column) for column in reference.features]
    positions.append(_positions(layout, reference.prediction, prediction=True))
    assert [len(p) for p in positions] == [
        c.slots() for c in (*reference.features, reference.prediction)]
    flat = [i for p in positions for i in p]
    assert flat == list(range(HEADER, layout.size))  # in order, no gaps
    assert layout.empty().size == layout.size and not layout.empty().any()


# --- live vectors: the columns ------------------------------------------------------------

def test_numeric_counts_agree_with_searchsorted_on_the_edges() -> None:
    """Independently: a finite value below the first edge or above the last is out of
    range; inside, ``searchsorted(edges, x, "right") - 1`` is its bin (the last bin closed
    on the right); the sums of the values out of range are kept."""
    reference = build_reference({"x": _rng(12).normal(size=2000)})
    layout = Layout(reference)
    column = reference.features[0]
    assert isinstance(column, NumericProfile)
    edges = np.array(column.edges)
    batch = np.concatenate([_rng(13).normal(0.3, 1.5, 5000), edges, [NAN, INF, -INF],
                            edges[:1] - 1e-9, edges[-1:] + 1e-9])
    live = _slots(layout, _count(layout, {"x": batch}), "x")
    finite = batch[np.isfinite(batch)]
    below, above = finite[finite < edges[0]], finite[finite > edges[-1]]
    inside = finite[(finite >= edges[0]) & (finite <= edges[-1])]
    index = np.searchsorted(edges, inside, side="right") - 1
    index[index == len(edges) - 1] = len(edges) - 2  # the last edge: the last bin
    bins = np.bincount(index, minlength=len(edges) - 1)
    bins_count = len(column.counts)
    assert live.size == bins_count + 5
    assert live[0] == 3 and live[1] == below.size and live[bins_count + 2] == above.size
    assert np.array_equal(live[2:bins_count + 2], bins)
    assert live[bins_count + 3] == pytest.approx(below.sum(), rel=1e-12)
    assert live[bins_count + 4] == pytest.approx(above.sum(), rel=1e-12)
    assert live[:bins_count + 3].sum() == batch.size
    # Every edge is counted in the bin it opens; the last edge in the last bin.
    assert np.all(bins[:-1] >= 1) and bins[-1] >= 2


def test_categorical_counts_with_unseen_and_null_values() -> None:
    reference = build_reference(_reference_data())
    layout = Layout(reference)
    city = reference.feature("city")
    assert isinstance(city, CategoricalProfile)
    assert city.categories == ("paris", "rome", "oslo", "lima")
    batch = np.array(["rome", "rome", "lima", "tokyo", None, NAN, "oslo", "Rome", "paris"],
                     dtype=object)
    live = _slots(layout, _count(layout, {"city": batch}), "city")
    # nulls, paris, rome, oslo, lima, other, unseen ("tokyo", "Rome")
    assert live.tolist() == [2, 1, 2, 1, 1, 0, 2]
    strings = _slots(layout, _count(layout, {"city": np.array(["oslo", "x"])}), "city")
    assert strings.tolist() == [0, 0, 0, 1, 0, 0, 1]


def test_known_categories_beyond_the_top_count_as_other() -> None:
    names = [f"k{i:03d}" for i in range(TOP_CATEGORIES + 5)]
    values = np.array([n for i, n in enumerate(names) for _ in range(100 - i)])
    reference = build_reference({"x": values})
    layout = Layout(reference)
    live = _slots(layout, _count(layout, {"x": np.array(
        [names[0], names[-1], names[-2], "new", names[TOP_CATEGORIES - 1]])}), "x")
    assert live[1] == 1 and live[TOP_CATEGORIES] == 1
    assert (live[-2], live[-1]) == (2, 1)  # other, unseen


def test_numeric_categories_match_whatever_the_number_type() -> None:
    """1, 1.0, np.int8(1), True and an object 1 are the same category, as in the
    reference (numbers compared as floats)."""
    reference = build_reference({"x": np.array([1, 2, 2, 3, 3, 3])})
    layout = Layout(reference)
    column = reference.features[0]
    assert isinstance(column, CategoricalProfile) and column.categories == (3.0, 2.0, 1.0)
    for batch in (np.array([1, 2, 3, 4]), np.array([1.0, 2.0, 3.0, 4.5]),
                  np.array([1, 2, 3, 9], dtype=np.int8),
                  np.array([1, 2.0, np.int64(3), 7, None], dtype=object),
                  [1, 2.0, 3, 0]):
        live = _slots(layout, _count(layout, {"x": batch}), "x")
        assert live[1:].tolist() == [1, 1, 1, 0, 1], batch
        assert live[0] == (1 if len(batch) == 5 else 0)
    flags = _slots(layout, _count(layout, {"x": np.array([True, True, False])}), "x")
    assert flags[1:].tolist() == [0, 0, 2, 0, 1]  # True is 1.0; False, 0.0, never seen


def test_bool_columns_count_bools_and_boxed_bools() -> None:
    reference = build_reference(_reference_data())
    layout = Layout(reference)
    flag = reference.feature("flag")
    assert isinstance(flag, CategoricalProfile) and flag.categories == ("False", "True")
    live = _slots(layout, _count(layout, {"flag": np.array([True, False, False])}), "flag")
    assert live.tolist() == [0, 2, 1, 0, 0]
    boxed = np.array([True, None, np.bool_(False)], dtype=object)
    assert _slots(layout, _count(layout, {"flag": boxed}), "flag").tolist() == [1, 1, 1, 0, 0]


def test_object_arrays_with_none_in_a_numeric_column() -> None:
    reference = build_reference({"x": np.arange(100.0)})
    layout = Layout(reference)
    batch = np.array([None, 5.0, 50, -3, 1000, NAN, "oops"], dtype=object)
    live = _slots(layout, _count(layout, {"x": batch}), "x")
    column = reference.features[0]
    assert isinstance(column, NumericProfile)
    bins = len(column.counts)
    assert live[0] == 3  # None, NaN, and a string that is no number
    assert (live[1], live[bins + 2], live[bins + 3], live[bins + 4]) == (1, 1, -3, 1000)
    assert live[2:bins + 2].sum() == 2


def test_unknown_columns_are_ignored_and_missing_ones_count_nothing() -> None:
    reference = build_reference(_reference_data())
    layout = Layout(reference)
    batch = {"num": [0.5, 1.5], "city": ["rome", "rome"]}
    vector = _count(layout, batch)
    assert np.array_equal(_count(layout, {**batch, "unknown": [1, 2], "NUM": [3, 4]}), vector)
    assert _slots(layout, vector, "num").sum() == 2  # two values in range: no sums kept
    assert _slots(layout, vector, "city").tolist() == [0, 0, 2, 0, 0, 0, 0]
    for name in ("few", "flag"):
        assert not _slots(layout, vector, name).any()
    assert vector[:HEADER].sum() == 0  # rows are counted by add_requests, not here


def test_the_prediction_slot_is_its_own() -> None:
    """A classifier's predictions are counted as categories, a regressor's on bins; a 2-D
    single-column prediction counts as its column; a feature named "prediction" has its
    own slot; no predictions, or a reference without them, count nothing there."""
    data = {**_reference_data(), "prediction": _rng(14).normal(size=400)}
    labels = _rng(15).choice(["cat", "dog"], 400, p=[0.7, 0.3])
    classifier = build_reference(data, labels, categorical_predictions=True)
    layout = Layout(classifier)
    assert classifier.prediction is not None
    vector = _count(layout, {"prediction": [0.0]}, np.array([["dog"], ["cat"], ["bird"]]))
    counts = layout.column_counts(vector, classifier.prediction, prediction=True)
    assert counts.tolist() == [0, 1, 1, 0, 1]  # nulls, cat, dog, other, unseen
    feature = _slots(layout, vector, "prediction")
    assert feature.sum() == 1 and feature.size != counts.size
    nothing = _count(layout, {"prediction": [0.0]})
    assert not layout.column_counts(nothing, classifier.prediction, prediction=True).any()

    scores = _rng(16).normal(10.0, 1.0, (400, 1))
    regressor = build_reference(_reference_data(), scores)
    layout = Layout(regressor)
    prediction = regressor.prediction
    assert isinstance(prediction, NumericProfile)
    flat = _count(layout, {}, scores[:50, 0])
    assert np.array_equal(_count(layout, {}, scores[:50]), flat)
    counts = layout.column_counts(flat, prediction, prediction=True)
    assert counts[0] == 0 and counts[2:-3].sum() == 50
    unprofiled = Layout(build_reference(_reference_data()))
    assert np.array_equal(_count(unprofiled, {}, scores[:5]), unprofiled.empty())


# --- merge by addition ----------------------------------------------------------------------

MERGE_REFERENCE = build_reference(
    {"num": _rng(17).normal(0.0, 1.0, 600), "few": _rng(18).integers(0, 4, 600),
     "city": _rng(19).choice(["a", "b", "c"], 600), "flag": _rng(20).random(600) < 0.5},
    _rng(21).normal(size=600))
MERGE_LAYOUT = Layout(MERGE_REFERENCE)

_numbers = st.one_of(st.floats(-4.0, 4.0), st.floats(-1e300, 1e300),
                     st.sampled_from([NAN, INF, -INF]), st.none())


@st.composite
def _batches(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 25))

    def column(elements: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(elements, min_size=n, max_size=n))

    return {
        "num": np.array(column(_numbers), dtype=object),
        "few": np.array(column(st.sampled_from([0, 1, 2.0, 3, 9, None])), dtype=object),
        "city": np.array(column(st.sampled_from(["a", "b", "c", "zz", None])), dtype=object),
        "flag": np.array(column(st.booleans()), dtype=bool),
        "predictions": np.array(column(st.floats(-3.0, 3.0))),
        "latencies": np.array(column(st.floats(0.0, 100.0))),
        "errors": draw(st.integers(0, n)),
    }


def _accumulate(vector: Floats, batch: Mapping[str, Any]) -> None:
    MERGE_LAYOUT.add_requests(vector, latencies_s=batch["latencies"], errors=batch["errors"],
                              rows=len(batch["flag"]))
    MERGE_LAYOUT.add_rows(vector, batch, batch["predictions"])


def _sum_slots() -> list[int]:
    """The slots that hold sums of values (not counts): they add up only to rounding."""
    slots = [LATENCY_SUM]
    assert MERGE_REFERENCE.prediction is not None
    for column in MERGE_REFERENCE.features:
        if isinstance(column, NumericProfile):
            slots += _positions(MERGE_LAYOUT, column)[-2:]
    return slots + _positions(MERGE_LAYOUT, MERGE_REFERENCE.prediction, prediction=True)[-2:]


SUM_SLOTS = _sum_slots()


@settings(max_examples=60, deadline=None)
@given(a=_batches(), b=_batches())
def test_vectors_merge_by_addition(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Accumulating A then B into one vector is accumulating them into two and adding
    (exactly), and is accumulating their concatenation (counts exactly; the sums of
    values up to rounding)."""
    sequential = MERGE_LAYOUT.empty()
    _accumulate(sequential, a)
    _accumulate(sequential, b)
    first, second = MERGE_LAYOUT.empty(), MERGE_LAYOUT.empty()
    _accumulate(first, a)
    _accumulate(second, b)
    assert np.array_equal(sequential, first + second)
    joined = {k: (a[k] + b[k] if k == "errors" else np.concatenate([a[k], b[k]]))
              for k in a}
    together = MERGE_LAYOUT.empty()
    _accumulate(together, joined)
    counts = np.ones(MERGE_LAYOUT.size, dtype=bool)
    counts[SUM_SLOTS] = False
    assert np.array_equal(together[counts], sequential[counts])
    assert np.allclose(together[SUM_SLOTS], sequential[SUM_SLOTS], rtol=1e-12, atol=0.0)
    rows = len(a["flag"]) + len(b["flag"])
    assert sequential[ROWS] == rows and sequential[REQUESTS] == rows
    for column in MERGE_REFERENCE.features:  # every row lands in exactly one slot
        live = MERGE_LAYOUT.column_counts(sequential, column)
        tail = 2 if isinstance(column, NumericProfile) else 0
        assert live[:live.size - tail].sum() == rows
