"""`modelhost batch` on real `dask.distributed` workers: a LocalCluster of two worker
processes scores CSV files (a glob) and a Parquet folder, the output equals in-process
prediction row by row, refused rows land in the rejects output with the reason, and the
command refuses what it should (an existing output, a scheduler that does not answer,
no data) with its exit code."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelhost import Client, Settings
from modelhost.batch.dask_scoring import package, score
from modelhost.cli import run
from modelhost.errors import InvalidInputError
from tests.artifacts.conftest import moto_endpoint, s3_bucket, s3_storage_options  # noqa: F401 - fixtures
from tests.fixtures_models import iris, iris_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as local:
        yield local.scheduler_address


def data(rows: int = 3000) -> pd.DataFrame:
    X, _ = iris()
    return pd.concat([X] * (rows // len(X) + 1), ignore_index=True).head(rows)


def pkg_for(client: Client, tmp_path: Path, ref: str = "1.0.0") -> object:
    mv = client.registry.get_version("iris", ref)
    folder = client.artifacts.get_tree(mv.artifact_digest, tmp_path / "model")
    return package(mv, folder)


def test_csv_files_scored_on_the_cluster_equal_in_process(
        iris_client: Client, tmp_path: Path, cluster: str) -> None:
    frame = data().astype(object)
    frame.iloc[17, 1] = "abc"  # refused: not a number
    frame.iloc[2500, 2] = None  # refused: null
    for i, start in enumerate(range(0, len(frame), 1000)):
        frame.iloc[start:start + 1000].to_csv(tmp_path / f"part-{i}.csv", index=False)
    summary = score(pkg_for(iris_client, tmp_path), input_uri=str(tmp_path / "*.csv"),
                    output_uri=str(tmp_path / "out"), rejects_uri=str(tmp_path / "bad"),
                    scheduler=cluster, partition_rows=400)
    assert (summary.rows, summary.rejected) == (2998, 2)
    out = pd.read_parquet(tmp_path / "out")
    good = frame.drop(index=[17, 2500]).astype(float).reset_index(drop=True)
    expected = iris_client.predict("iris", good, version="1.0.0")
    assert len(out) == len(good)
    assert np.allclose(out[good.columns].to_numpy(float), good.to_numpy())  # row by row
    assert out["prediction"].tolist() == expected.predictions
    probabilities = out[["probability_0", "probability_1", "probability_2"]].to_numpy()
    assert np.allclose(probabilities, expected.probabilities)
    assert set(out["model_version"]) == {"1.0.0"}
    bad = pd.read_parquet(tmp_path / "bad")
    assert sorted(bad["reason"]) == ["column 'petal_length': null value not allowed",
                                     "column 'sepal_width': expected double, got string"]
    assert "abc" in bad["sepal_width"].tolist()


def test_data_the_signature_refuses_from_its_first_rows_is_refused_with_nothing_written(
        iris_client: Client, tmp_path: Path, cluster: str) -> None:
    """The output's types come from scoring the first rows (on a worker): when the
    signature refuses all of them, the input is not this model's data."""
    frame = data(200).astype(object)
    frame["sepal_width"] = "wide"
    frame.to_csv(tmp_path / "wrong.csv", index=False)
    with pytest.raises(InvalidInputError, match="refuses every one of the first rows"):
        score(pkg_for(iris_client, tmp_path), input_uri=str(tmp_path / "wrong.csv"),
              output_uri=str(tmp_path / "out"), rejects_uri=str(tmp_path / "bad"),
              scheduler=cluster)
    assert not (tmp_path / "out").exists() and not (tmp_path / "bad").exists()


def test_rejects_in_the_output_folder_are_refused_before_anything_runs(
        iris_client: Client, tmp_path: Path) -> None:
    """A run that refuses nothing deletes its (empty) rejects: they must not be the
    output."""
    data(100).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(InvalidInputError, match="rejects must go elsewhere"):
        score(pkg_for(iris_client, tmp_path), input_uri=str(tmp_path / "in.parquet"),
              output_uri=str(tmp_path / "out"), rejects_uri=f"{tmp_path}/./out/",
              scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "out").exists()


def test_a_parquet_folder_and_another_version(iris_client: Client, tmp_path: Path,
                                              cluster: str) -> None:
    source = tmp_path / "in"
    source.mkdir()
    frame = data(1000)
    frame.iloc[:600].to_parquet(source / "a.parquet")
    frame.iloc[600:].to_parquet(source / "b.parquet")
    summary = score(pkg_for(iris_client, tmp_path, "1.0.1"), input_uri=str(source),
                    output_uri=str(tmp_path / "out"), rejects_uri=str(tmp_path / "bad"),
                    scheduler=cluster)
    assert (summary.rows, summary.rejected, summary.rejects) == (1000, 0, None)
    assert not (tmp_path / "bad").exists()  # rejects are written only when there are some
    out = pd.read_parquet(tmp_path / "out")
    assert out["prediction"].tolist() == iris_client.predict(
        "iris", frame, version="1.0.1").predictions
    assert set(out["model_version"]) == {"1.0.1"}
    assert encodings(tmp_path / "out") == {
        "sepal_length": False, "sepal_width": False, "petal_length": False,
        "petal_width": False, "prediction": True, "probability_0": False,
        "probability_1": False, "probability_2": False, "model_version": True}


def pq_row_groups(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_row_groups)


def encodings(folder: Path) -> dict[str, bool]:
    """Per column of the Parquet files in ``folder``: whether it is dictionary-encoded
    (in every file and row group)."""
    import pyarrow.parquet as pq

    found: dict[str, bool] = {}
    for path in sorted(folder.glob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        for group in range(meta.num_row_groups):
            for i in range(meta.num_columns):
                column = meta.row_group(group).column(i)
                coded = any("DICTIONARY" in e for e in column.encodings)
                found[column.path_in_schema] = found.get(column.path_in_schema, coded) and coded
    return found


def test_the_command_on_a_local_cluster(iris_client: Client, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data(500).to_csv(tmp_path / "rows.csv", index=False)
    home = ["--home", str(iris_client.settings.home)]
    env_db = iris_client.settings.resolved_db_url
    args = [*home, "--db-url", env_db, "--artifacts", iris_client.settings.resolved_artifacts]
    out = str(tmp_path / "scored")
    code = run([*args, "batch", "iris", "--input", str(tmp_path / "rows.csv"),
                "--output", out, "--workers", "2", "--json"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads(printed)
    assert (summary["rows"], summary["rejected"], summary["version"]) == (500, 0, "1.0.0")
    assert len(pd.read_parquet(out)) == 500

    # An existing output is refused unless --overwrite (exit 4), and kept.
    assert run([*args, "batch", "iris", "--input", str(tmp_path / "rows.csv"),
                "--output", out]) == 4
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert len(pd.read_parquet(out)) == 500
    # An output nothing can write to: exit 1, nothing written.
    assert run([*args, "batch", "iris", "--input", str(tmp_path / "rows.csv"),
                "--output", "nowhere://scored"]) == 1
    assert "'nowhere://scored' cannot be written" in capsys.readouterr().err
    # No data there: exit 1, before any cluster starts.
    assert run([*args, "batch", "iris", "--input", str(tmp_path / "none.csv"),
                "--output", str(tmp_path / "x")]) == 1
    assert "no file matches" in capsys.readouterr().err

    # A scheduler that does not answer: exit 5 with its address, after a bounded wait.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    assert run([*args, "batch", "iris", "--input", str(tmp_path / "rows.csv"),
                "--output", str(tmp_path / "y"), "--scheduler",
                f"tcp://127.0.0.1:{port}"]) == 5
    assert f"tcp://127.0.0.1:{port}" in capsys.readouterr().err
    assert time.monotonic() - started < 30


def test_a_dataset_version_as_input(iris_client: Client, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data(300).to_csv(tmp_path / "rows.csv", index=False)
    iris_client.datasets.add(tmp_path / "rows.csv", name="nightly")
    args = ["--home", str(iris_client.settings.home), "--db-url",
            iris_client.settings.resolved_db_url, "--artifacts",
            iris_client.settings.resolved_artifacts]
    code = run([*args, "batch", "iris", "--input", "dataset://nightly/1",
                "--output", str(tmp_path / "out"), "--json"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert json.loads(printed.out)["rows"] == 300


def _page_faults_of_large_arrays() -> int:
    """Minor page faults of 40 allocations of a 6 MB array (a RandomForest's
    probabilities per tree for 250,000 rows), in the calling worker."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        block = np.ones(750_000)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _profiler_enabled() -> bool:
    import dask

    return bool(dask.config.get("distributed.worker.profile.enabled"))


def test_the_cluster_a_run_starts_reuses_its_workers_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask's default worker environment (MALLOC_TRIM_THRESHOLD_=65536) maps every
    large array afresh, so its pages fault in on every model call; the workers of the
    cluster a run starts keep such memory for the next call."""
    from dask.distributed import Client as DaskClient
    from dask.distributed import LocalCluster

    from modelhost.batch.dask_scoring import WORKER_MALLOC, local_cluster

    for name in WORKER_MALLOC:  # Dask takes these from the environment first
        monkeypatch.delenv(name, raising=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as plain, DaskClient(plain) as dask_client:
        default = dask_client.submit(_page_faults_of_large_arrays, pure=False).result()
    for name in WORKER_MALLOC:
        monkeypatch.delenv(name, raising=False)
    with local_cluster(1) as ours, DaskClient(ours) as dask_client:
        tuned = dask_client.submit(_page_faults_of_large_arrays, pure=False).result()
        environ = dask_client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC})
        profiling = dask_client.run(_profiler_enabled)
    assert list(environ.values()) == [{k: str(v) for k, v in WORKER_MALLOC.items()}]
    assert list(profiling.values()) == [False]  # nor the profiler's sampling thread
    # Seen: 17,820 against 1,056 (the first array's pages, then none).
    assert default > 40 * 100  # each array's pages fault in again
    assert tuned < default / 5


def test_parquet_on_s3_in_and_out_with_the_artifact_stores_options(
        s3_bucket: tuple[Any, str], moto_endpoint: str, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        cluster: str) -> None:
    """An S3 input and output (a real S3 API on loopback) through the command, with
    the storage options of MODELHOST_ARTIFACTS_OPTIONS: the cluster's workers read and
    write with them (they have no AWS settings of their own)."""
    s3, bucket = s3_bucket
    options = s3_storage_options(moto_endpoint)
    monkeypatch.setenv("MODELHOST_ARTIFACTS_OPTIONS", json.dumps(options))
    settings = Settings(home=tmp_path / "home", artifacts=f"s3://{bucket}/artifacts")
    with Client(settings) as client:
        client.registry.register(iris_model(), name="iris", input_example=iris()[0].head(5))
    frame = data(900)
    for i in range(3):  # a folder of three files
        body = frame.iloc[i * 300:(i + 1) * 300].to_parquet(index=False)
        s3.put_object(Bucket=bucket, Key=f"in/part-{i}.parquet", Body=body)
    args = ["--home", str(settings.home), "--artifacts", f"s3://{bucket}/artifacts"]
    code = run([*args, "batch", "iris", "--version", "latest", "--input",
                f"s3://{bucket}/in", "--output", f"s3://{bucket}/out", "--json",
                "--scheduler", cluster])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert json.loads(printed.out)["rows"] == 900
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")
                  ["Contents"])
    assert keys == [f"out/part.{i:06d}.parquet" for i in range(3)]
    out = pd.concat(pd.read_parquet(io.BytesIO(
        s3.get_object(Bucket=bucket, Key=key)["Body"].read())) for key in keys)
    assert out["prediction"].tolist() == iris_model().predict(frame).tolist()


def test_a_scheduler_without_workers_is_refused_with_nothing_written(
        iris_client: Client, tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    from modelhost.errors import StoreUnavailableError

    data(100).to_parquet(tmp_path / "in.parquet")
    with LocalCluster(n_workers=0, dashboard_address=":0") as empty, pytest.raises(
            StoreUnavailableError, match="it has no workers"):
        score(pkg_for(iris_client, tmp_path), input_uri=str(tmp_path / "in.parquet"),
              output_uri=str(tmp_path / "out"), rejects_uri=str(tmp_path / "bad"),
              scheduler=empty.scheduler_address)
    assert not (tmp_path / "out").exists() and not (tmp_path / "bad").exists()


def test_an_object_store_that_does_not_answer_is_unavailable(
        iris_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An s3:// input whose endpoint does not answer: exit 5's error, naming the
    failure (not the endpoint), before any cluster is asked for."""
    from modelhost.errors import StoreUnavailableError
    from tests.artifacts.conftest import _aws_env

    _aws_env(monkeypatch, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options: dict[str, Any] = s3_storage_options(f"http://127.0.0.1:{port}")
    options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 1}
    with pytest.raises(StoreUnavailableError) as caught:
        score(pkg_for(iris_client, tmp_path), input_uri="s3://bucket/in.parquet",
              output_uri=str(tmp_path / "out"), rejects_uri=str(tmp_path / "bad"),
              storage_options=options, scheduler="tcp://127.0.0.1:9")
    assert caught.value.message == ("the storage of the input or the output is "
                                    "unavailable: EndpointConnectionError; try again "
                                    "shortly")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["in", ".", "in/a.parquet"])
def test_an_output_that_holds_the_input_is_refused_and_the_input_kept(
        iris_client: Client, tmp_path: Path, target: str) -> None:
    """--overwrite empties the output before the pieces are read: an output that
    holds the input would lose it."""
    source = tmp_path / "in"
    source.mkdir()
    data(100).to_parquet(source / "a.parquet")
    pkg = pkg_for(iris_client, tmp_path / "pkg")
    for output, rejects in ((tmp_path / target, tmp_path / "bad"),
                            (tmp_path / "out", tmp_path / target)):
        with pytest.raises(InvalidInputError, match="must not hold the input"):
            score(pkg, input_uri=str(source),
                  output_uri=str(output), rejects_uri=str(rejects), overwrite=True,
                  scheduler="tcp://127.0.0.1:9")
    assert len(pd.read_parquet(source / "a.parquet")) == 100
    assert not (tmp_path / "out").exists() and not (tmp_path / "bad").exists()


def test_two_registries_with_the_same_name_and_version_on_one_cluster(
        tmp_path: Path, cluster: str) -> None:
    """A running cluster keeps the models it loaded for the runs after: a model of
    another registry with the same name and version is another model."""
    from sklearn.linear_model import LogisticRegression

    X, y = iris()
    frame = data(300)
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=100)  # a piece per worker
    models = {"a": iris_model(), "b": LogisticRegression(max_iter=500).fit(X, 2 - y)}
    for home, model in models.items():
        with Client(Settings(home=tmp_path / home)) as client:
            client.registry.register(model, name="iris", input_example=X.head(5))
            assert client.registry.get_version("iris", "latest").version == "1.0.0"
            score(pkg_for(client, tmp_path / home), input_uri=str(tmp_path / "in.parquet"),
                  output_uri=str(tmp_path / home / "out"),
                  rejects_uri=str(tmp_path / home / "bad"), scheduler=cluster)
            out = pd.read_parquet(tmp_path / home / "out")
            assert out["prediction"].tolist() == client.predict(
                "iris", frame, version="1.0.0").predictions
    assert (pd.read_parquet(tmp_path / "a" / "out")["prediction"]
            != pd.read_parquet(tmp_path / "b" / "out")["prediction"]).mean() > 0.5


def test_a_worker_keeps_only_the_latest_models(iris_client: Client, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from modelhost.batch import dask_scoring

    monkeypatch.setattr(dask_scoring, "_LOADED", {})
    monkeypatch.setattr(dask_scoring, "KEEP_LOADED", 2)
    first, second, third = (pkg_for(iris_client, tmp_path / ref, ref)
                            for ref in ("1.0.0", "1.0.1", "@production"))
    scorer = dask_scoring._scorer(first)
    assert dask_scoring._scorer(first) is scorer  # loaded once
    dask_scoring._scorer(second)
    assert dask_scoring._scorer(third) is scorer  # production is 1.0.0: the same files
    monkeypatch.setattr(dask_scoring, "KEEP_LOADED", 1)
    dask_scoring._scorer(second)  # kept: loads nothing
    assert [key[1] for key in dask_scoring._LOADED] == ["1.0.0", "1.0.1"]
    dask_scoring._scorer(dask_scoring.ModelPackage(  # another artifact: loads
        version=dataclasses.replace(first.version, artifact_digest="0" * 64),
        files=first.files))
    assert len(dask_scoring._LOADED) == 1
    assert dask_scoring._scorer(first) is not scorer  # the first went: it loads again


def test_a_piece_that_fails_part_way_leaves_no_part(
        iris_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece is written a model call at a time: when a later call fails, what was
    written of it goes, in the output and in the rejects."""
    from modelhost.batch import dask_scoring
    from modelhost.batch.pieces import Piece

    frame = data(1000).astype(object)
    frame.iloc[5, 0] = "abc"  # a refused row in the first call: the rejects' part exists
    frame.to_csv(tmp_path / "in.csv", index=False)
    piece = Piece(str(tmp_path / "in.csv"), "csv", offset=0, length=1 << 20)
    pkg = pkg_for(iris_client, tmp_path)
    schemas = dask_scoring._schemas(piece, pkg, {})
    real, calls = dask_scoring._score_chunk, []

    def failing(part: Any, *args: Any) -> Any:
        calls.append(len(part))
        if len(calls) == 3:
            raise InvalidInputError("the third call fails")
        return real(part, *args)

    monkeypatch.setattr(dask_scoring, "_score_chunk", failing)
    targets = {name: (str(tmp_path / name), {}) for name in ("out", "bad")}
    with pytest.raises(InvalidInputError, match="third call"):
        dask_scoring._score_piece(piece, 0, pkg=pkg, schemas=schemas,
                                  output=targets["out"], rejects=targets["bad"],
                                  options={}, chunk_rows=300)
    assert calls == [300, 300, 300]
    assert list((tmp_path / "out").iterdir()) == [] and list((tmp_path / "bad").iterdir()) == []
    monkeypatch.setattr(dask_scoring, "_score_chunk", real)
    assert dask_scoring._score_piece(piece, 0, pkg=pkg, schemas=schemas,
                                     output=targets["out"], rejects=targets["bad"],
                                     options={}, chunk_rows=300) == (999, 1)
    assert len(pd.read_parquet(tmp_path / "out" / "part.000000.parquet")) == 999
    assert pq_row_groups(tmp_path / "out" / "part.000000.parquet") == 4  # one per call
