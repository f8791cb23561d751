"""Registry use cases against the real store: SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import numpy as np
import pytest
from tests.fixtures_models import iris, iris_example, iris_model

from modelhost import Client
from modelhost.entities import Stage
from modelhost.errors import (
    AliasNotFoundError,
    ArtifactCorruptedError,
    ArtifactMissingError,
    IllegalTransitionError,
    InvalidInputError,
    InvalidNameError,
    ModelNotFoundError,
    ReservedAliasError,
    SemverRuleError,
    SignatureViolationError,
    VersionExistsError,
    VersionNotFoundError,
)

THREE = ("sepal_length", "sepal_width", "petal_length")


def register(client: Client, name: str = "iris", **kwargs: object):  # type: ignore[no-untyped-def]
    columns = kwargs.pop("columns", None)
    return client.registry.register(iris_model(columns), name=name,
                                    input_example=iris_example(columns), **kwargs)


def artifact_files(client: Client) -> list[Path]:
    root = Path(client.settings.resolved_artifacts)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_register_records_signature_example_and_lineage(client: Client) -> None:
    mv = register(client, metrics={"accuracy": 0.97}, params={"C": 1.0}, tags={"team": "a"})
    assert mv.version == "1.0.0"
    assert mv.flavor == "sklearn"
    assert mv.stage is Stage.NONE
    assert [c.name for c in mv.signature.columns] == list(iris()[0].columns)
    assert len(mv.input_example) == 5
    assert mv.metrics == {"accuracy": 0.97}
    assert mv.params == {"C": "1.0"}
    assert mv.tags == {"team": "a"}
    assert mv.lineage.python_version
    assert "scikit-learn" in mv.lineage.packages
    assert len(mv.artifact_digest) == 64
    assert client.registry.get_version("iris", "latest") == mv


def test_versions_bump_by_signature(client: Client) -> None:
    assert register(client).version == "1.0.0"
    assert register(client).version == "1.0.1"
    assert register(client, columns=THREE).version == "2.0.0"
    versions = [v.version for v in client.registry.list_versions("iris")]
    assert versions == ["1.0.0", "1.0.1", "2.0.0"]
    assert client.registry.get_model("iris").latest_version == "2.0.0"


def test_explicit_version_breaking_the_rule_is_refused_and_leaves_nothing(
        client: Client) -> None:
    register(client)
    files_before = artifact_files(client)
    with pytest.raises(SemverRuleError):
        register(client, columns=THREE, version="1.1.0")
    assert [v.version for v in client.registry.list_versions("iris")] == ["1.0.0"]
    assert artifact_files(client) == files_before
    assert register(client, columns=THREE, version="1.1.0", force=True).version == "1.1.0"


def test_duplicate_explicit_version_is_a_conflict(client: Client) -> None:
    register(client, version="1.0.0")
    files_before = artifact_files(client)
    with pytest.raises(VersionExistsError):
        register(client, version="1.0.0", force=True, params={"other": 1})
    assert artifact_files(client) == files_before


@pytest.mark.parametrize("bad", ["../x", "", "Iris", "a/b", "ａbc", "a\u200bb", "-x", "x" * 65,
                                 "name\n", "%2e%2e", ".x"])
def test_invalid_names_are_refused_before_anything_is_written(client: Client,
                                                              bad: str) -> None:
    with pytest.raises(InvalidNameError):
        register(client, name=bad)
    assert client.registry.list_models() == []
    assert artifact_files(client) == []


def test_unknown_model_version_and_alias(client: Client) -> None:
    with pytest.raises(ModelNotFoundError):
        client.registry.get_version("nope", "1.0.0")
    register(client)
    with pytest.raises(VersionNotFoundError):
        client.registry.get_version("iris", "9.9.9")
    with pytest.raises(VersionNotFoundError):
        client.registry.get_version("iris", "champion")
    with pytest.raises(AliasNotFoundError):
        client.registry.delete_alias("iris", "champion")


def test_stage_transitions_keep_exactly_one_production(client: Client) -> None:
    v1, v2 = register(client).version, register(client).version
    with pytest.raises(IllegalTransitionError, match="allowed from 'none': staging, archived"):
        client.registry.transition("iris", v1, "production")
    client.registry.transition("iris", v1, "staging")
    client.registry.transition("iris", v1, "production", reason="first release")
    client.registry.transition("iris", v2, "staging")
    changes = client.registry.transition("iris", v2, Stage.PRODUCTION)
    assert [(c.version, c.to_stage) for c in changes] == [(v1, Stage.ARCHIVED),
                                                          (v2, Stage.PRODUCTION)]
    stages = {v.version: v.stage for v in client.registry.list_versions("iris")}
    assert stages == {v1: Stage.ARCHIVED, v2: Stage.PRODUCTION}
    assert client.registry.get_version("iris", "@production").version == v2
    history = client.registry.stage_history("iris")
    assert [(h.version, h.from_stage.value, h.to_stage.value) for h in history] == [
        (v1, "none", "staging"), (v1, "staging", "production"), (v2, "none", "staging"),
        (v1, "production", "archived"), (v2, "staging", "production")]
    with pytest.raises(InvalidInputError, match="unknown stage"):
        client.registry.transition("iris", v1, "prod")
    # rollback path: an archived version may go straight back to production
    client.registry.transition("iris", v1, "production", reason="rollback")
    assert client.registry.get_model("iris").production_version == v1


def test_aliases_move_and_resolve(client: Client) -> None:
    v1, v2 = register(client).version, register(client).version
    client.registry.set_alias("iris", "champion", v1)
    assert client.registry.get_version("iris", "champion").version == v1
    client.registry.set_alias("iris", "champion", v2)
    assert client.registry.get_version("iris", "champion").version == v2
    assert client.registry.get_version("iris", v2).aliases == ("champion",)
    assert client.registry.get_model("iris").aliases == {"champion": v2}
    client.registry.delete_alias("iris", "champion")
    assert client.registry.get_model("iris").aliases == {}
    for reserved in ("latest", "1.0.0"):
        with pytest.raises(ReservedAliasError):
            client.registry.set_alias("iris", reserved, v1)
    with pytest.raises(InvalidNameError):
        client.registry.set_alias("iris", "../x", v1)


def test_deprecation_and_sunset(client: Client) -> None:
    v1 = register(client).version
    with pytest.raises(InvalidInputError, match="in the past"):
        client.registry.deprecate("iris", v1, sunset="2020-01-01")
    with pytest.raises(InvalidInputError, match="invalid date"):
        client.registry.deprecate("iris", v1, sunset="next week")
    mv = client.registry.deprecate("iris", v1, sunset="2026-12-31")
    assert mv.sunset == dt.date(2026, 12, 31)
    assert mv.deprecated
    assert not client.registry.is_past_sunset(mv)


def test_model_card_markdown_and_html(client: Client) -> None:
    mv = register(client, metrics={"accuracy": 0.97}, description="<b>iris</b> | demo")
    client.registry.transition("iris", mv.version, "staging", reason="review")
    md = client.registry.card("iris", mv.version)
    assert md.startswith("# Model card: iris 1.0.0")
    assert "| sepal_length | double | yes | no |" in md
    assert "| accuracy | 0.97 |" in md
    assert "none | staging | review" in md
    page = client.registry.card("iris", mv.version, format="html")
    assert "&lt;b&gt;iris&lt;/b&gt;" in page and "<b>iris</b>" not in page
    with pytest.raises(InvalidInputError):
        client.registry.card("iris", mv.version, format="pdf")


def test_load_verifies_and_predicts(client: Client) -> None:
    mv = register(client)
    loaded = client.registry.load("iris", mv.version)
    X = iris_example(rows=20)
    assert np.array_equal(loaded.model.predict(X), iris_model().predict(X))
    assert loaded.model.predict_proba(X).shape == (20, 3)


def test_corrupted_artifact_is_refused(client: Client) -> None:
    mv = register(client)
    blobs = [p for p in artifact_files(client) if p.stat().st_size > 1000]
    target = blobs[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptedError, match="failed its integrity check"):
        client.registry.load("iris", mv.version)


def test_missing_artifact_is_reported(client: Client) -> None:
    mv = register(client)
    for path in artifact_files(client):
        path.unlink()
    with pytest.raises(ArtifactMissingError):
        client.registry.load("iris", mv.version)


def test_input_example_that_breaks_the_signature_is_refused(client: Client) -> None:
    from modelhost.signature import infer_signature

    signature = infer_signature(iris_example(THREE))
    with pytest.raises(SignatureViolationError):
        client.registry.register(iris_model(), name="iris", input_example=iris_example(),
                                 signature=signature)
    assert client.registry.list_models() == []


def test_concurrent_registrations_get_distinct_versions(client: Client) -> None:
    register(client)  # warm up imports outside the threads
    errors: list[BaseException] = []
    results: list[str] = []

    def worker() -> None:
        try:
            results.append(register(client).version)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [f"1.0.{i}" for i in range(1, 7)]
    assert len({v.version for v in client.registry.list_versions("iris")}) == 7


def test_concurrent_promotions_leave_one_production(client: Client) -> None:
    versions = [register(client).version for _ in range(4)]
    for v in versions:
        client.registry.transition("iris", v, "staging")
    barrier = threading.Barrier(len(versions))

    def promote(version: str) -> None:
        barrier.wait()
        try:
            client.registry.transition("iris", version, "production")
        except Exception:  # a loser may be told to retry; the invariant is what matters
            return

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stages = [v.stage for v in client.registry.list_versions("iris")]
    assert stages.count(Stage.PRODUCTION) == 1


def test_registering_the_same_file_again_repairs_a_corrupted_blob(client: Client,
                                                                  tmp_path: Path) -> None:
    import skops.io

    model_file = tmp_path / "iris.skops"
    skops.io.dump(iris_model(), model_file)

    def register_file():  # type: ignore[no-untyped-def]
        return client.registry.register(name="iris", path=model_file,
                                        input_example=iris_example())

    mv = register_file()
    target = max(artifact_files(client), key=lambda p: p.stat().st_size)
    original = target.read_bytes()
    target.chmod(0o644)
    target.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    with pytest.raises(ArtifactCorruptedError):
        client.registry.load("iris", mv.version)
    register_file()
    assert target.read_bytes() == original
    assert client.registry.load("iris", mv.version).version == mv


def test_unknown_mlmodel_flavor_and_untrusted_pickle_leave_nothing(client: Client,
                                                                  tmp_path: Path) -> None:
    import pickle

    from modelhost.errors import ModelLoadError, UntrustedArtifactError

    folder = tmp_path / "mlflow-model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors:\n  pytorch:\n    model_data: data\n")
    with pytest.raises(ModelLoadError, match="pytorch"):
        client.registry.register(name="torch", path=folder)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(iris_model()))
    with pytest.raises(UntrustedArtifactError):
        client.registry.register(name="pickled", path=pickled)
    assert client.registry.list_models() == []
    assert artifact_files(client) == []
    mv = client.registry.register(name="pickled", path=pickled, trust_pickle=True,
                                  input_example=iris_example())
    assert client.registry.load("pickled", mv.version).model.predict(iris_example()).shape == (5,)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"metrics": {"auc": "abc"}}, "must be a number"),
    ({"metrics": {"auc": float("nan")}}, "must be finite"),
    ({"params": {"": 1}}, "invalid param"),
    ({"tags": {"k" * 300: "v"}}, "invalid tag"),
    ({"run_id": "0" * 32}, "run '000"),
    ({"datasets": ["nope@1"]}, "dataset 'nope' version 1 not found"),
    ({"datasets": ["nope"]}, "must look like 'name@3'"),
])
def test_bad_registration_values_leave_nothing(client: Client, kwargs: dict[str, object],
                                               fragment: str) -> None:
    from modelhost.errors import ModelhostError

    with pytest.raises(ModelhostError, match=fragment):
        register(client, **kwargs)
    assert client.registry.list_models() == []
    assert artifact_files(client) == []


def test_same_file_without_example_keeps_the_signature(client: Client, tmp_path: Path) -> None:
    import skops.io

    model_file = tmp_path / "iris.skops"
    skops.io.dump(iris_model(), model_file)
    first = client.registry.register(name="iris", path=model_file, input_example=iris_example())
    second = client.registry.register(name="iris", path=model_file)
    assert second.version == "1.0.1"
    assert second.signature == first.signature
    # A model that still accepts the latest example keeps the clients' contract...
    other = tmp_path / "three.skops"
    skops.io.dump(iris_model(THREE), other)
    assert client.registry.register(name="iris", path=other).version == "1.0.2"
    # ...and one that does not has none: a breaking change.
    client.registry.register(iris_model(THREE), name="iris", input_example=iris_example(THREE))
    four = tmp_path / "four.skops"
    skops.io.dump(iris_model(), four)
    assert client.registry.register(name="iris", path=four).version == "3.0.0"


def test_an_address_makes_a_remote_client_and_anything_else_is_refused_clearly() -> None:
    from modelhost.remote import RemoteClient

    with Client("http://localhost:8000") as remote:  # nothing is contacted until asked
        assert isinstance(remote, RemoteClient) and remote.url == "http://localhost:8000"
    with pytest.raises(InvalidInputError, match="http:// or https://"):
        Client("localhost:8000")


def test_registry_objects_come_back_whole_from_their_json(client: Client) -> None:
    """What a remote registry rebuilds from a server's answers equals the local objects,
    with every field (a signature, lineage, aliases, a sunset, stage changes)."""
    import json

    from modelhost.entities import Model, ModelVersion, StageChange

    register(client, tags={"team": "fraud"})
    client.registry.set_alias("iris", "champion", "1.0.0")
    client.registry.deprecate("iris", "1.0.0", sunset="2099-12-31")
    changes = client.registry.transition("iris", "1.0.0", "staging", reason="check")
    through = json.loads(json.dumps([c.to_dict() for c in changes]))
    assert [StageChange.from_dict(c) for c in through] == changes
    mv = client.registry.get_version("iris", "1.0.0")
    assert mv.signature is not None and mv.sunset is not None and mv.aliases
    assert ModelVersion.from_dict(json.loads(json.dumps(mv.to_dict()))) == mv
    model = client.registry.get_model("iris")
    assert Model.from_dict(json.loads(json.dumps(model.to_dict()))) == model


def test_optimize_serves_onnx_when_it_agrees_and_is_faster(client: Client) -> None:
    X, _ = iris()
    mv = client.registry.register(iris_model(), name="iris", input_example=iris_example(),
                                  optimize=True, reference_data=X)
    report = mv.flavor_meta["optimize"]
    assert report["rows_checked"] == 155
    assert report["max_abs_diff"] <= report["tolerance"] == 1e-4
    assert report["onnx_ms_1"] > 0 and report["original_ms_1"] > 0
    # A one-row logistic regression runs far faster in onnxruntime than in sklearn.
    assert report["chosen"] == "onnx", report
    assert mv.flavor == "onnx"
    loaded = client.registry.load("iris", mv.version).model
    predictions, probabilities = loaded.predict_with_proba(X)
    assert np.array_equal(predictions, iris_model().predict(X))
    assert np.allclose(probabilities, iris_model().predict_proba(X), atol=1e-4)
    assert mv.flavor_meta["optimized_from"]["flavor"] == "sklearn"


def test_optimize_keeps_the_original_when_conversion_is_impossible(client: Client) -> None:
    from sklearn.semi_supervised import LabelSpreading

    X, y = iris()
    model = LabelSpreading().fit(X, y)  # no ONNX converter exists for it
    mv = client.registry.register(model, name="spread", input_example=iris_example(),
                                  optimize=True)
    assert mv.flavor == "sklearn"
    assert mv.flavor_meta["optimize"]["chosen"] == "original"
    assert "not converted" in mv.flavor_meta["optimize"]["reason"]


def test_client_predicts_with_a_version_without_signature(tmp_path: Path) -> None:
    from tests.fixtures_models import iris_example, iris_model

    import modelhost as mh

    with mh.Client(home=tmp_path / "home") as client:
        client.registry.register(iris_model(), name="iris")
        assert client.get_model_version("iris").signature is None
        client.transition_stage("iris", "1.0.0", "staging")
        client.transition_stage("iris", "1.0.0", "production")
        expected = iris_model().predict(iris_example(rows=2)).tolist()
        result = client.predict("iris", iris_example(rows=2))
        assert result.version.version == "1.0.0" and result.predictions == expected
        records = iris_example(rows=2).to_dict(orient="records")
        assert client.predict("iris", records, version="1.0.0").predictions == expected
        one = client.predict("iris", records[0], version="latest")
        assert one.predictions == expected[:1] and len(one.probabilities or []) == 1
        assert result.to_dict()["model"] == "iris"
