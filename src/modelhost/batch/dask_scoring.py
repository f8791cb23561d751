"""Batch scoring on Dask: a data set that does not fit a request, scored partition by
partition on a cluster, with the version's own scoring kernel.

The driver fetches the version's artifact once (verified, as every load is) and sends
its files to the workers with the flavor, the signature and the version; each worker
process loads the model from them once and keeps it for every partition it scores. Each
partition is checked against the signature: refused rows go to the rejects output with
the reason (``row`` counts from the start of its input file's partition), the others are
scored in model calls of ``partition_rows`` and written with their input columns plus
``prediction``, ``probabilities`` (when the model has them) and ``model_version``.

Dask loads only here (``pip install 'modelhost[batch]'``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost._paths import confined_path
from modelhost.batch.rows import numbers_from_text, prepare_rows
from modelhost.entities import ModelVersion
from modelhost.errors import (
    InvalidInputError,
    MissingDependencyError,
    ModelhostError,
    StoreUnavailableError,
)

DEFAULT_PARTITION_ROWS = 100_000
SCHEDULER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ModelPackage:
    """What a worker needs to load a version: its files, flavor and metadata."""

    version: ModelVersion
    files: Mapping[str, bytes]
    trust_pickle: bool = False


@dataclass(frozen=True)
class BatchSummary:
    model: str
    version: str
    rows: int
    rejected: int
    seconds: float
    output: str
    rejects: str | None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "rows": self.rows,
                "rejected": self.rejected, "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.rows_per_s, 1), "output": self.output,
                "rejects": self.rejects}


def package(version: ModelVersion, folder: Path, *, trust_pickle: bool = False
            ) -> ModelPackage:
    """The version's files (already fetched and verified into ``folder``)."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in sorted(folder.rglob("*")) if p.is_file()}
    return ModelPackage(version=version, files=files, trust_pickle=trust_pickle)


def score(pkg: ModelPackage, *, input_uri: str, output_uri: str, rejects_uri: str,
          scheduler: str | None = None, workers: int | None = None,
          partition_rows: int = DEFAULT_PARTITION_ROWS, overwrite: bool = False,
          storage_options: Mapping[str, Any] | None = None,
          progress: Callable[[Any], None] | None = None) -> BatchSummary:
    """Score the CSV or Parquet data at ``input_uri`` (a file, a folder, a glob, an
    fsspec URL) into Parquet at ``output_uri``; rejected rows into ``rejects_uri``.

    ``scheduler`` is the address of a running ``dask.distributed`` scheduler; without
    it a local cluster of ``workers`` processes runs for the call. ``progress(futures)``
    shows the computation's progress (the CLI's bar).

    Raises:
        InvalidInputError: no data at ``input_uri``, not CSV or Parquet, or
            ``partition_rows`` below 1.
        ConflictError: ``output_uri`` (or ``rejects_uri``) exists and not ``overwrite``.
        StoreUnavailableError: the scheduler did not answer.
        MissingDependencyError: Dask is not installed.
    """
    if partition_rows < 1:
        raise InvalidInputError(f"--partition-rows must be at least 1, got {partition_rows}")
    try:
        import importlib

        dd: Any = importlib.import_module("dask.dataframe")
        distributed: Any = importlib.import_module("dask.distributed")  # untyped
    except ImportError as exc:
        raise MissingDependencyError("batch scoring", "batch") from exc
    options = dict(storage_options or {})
    for target in (output_uri, rejects_uri):
        _check_output(target, overwrite=overwrite, options=options)
    fmt = _format(input_uri)
    cluster = None
    started = time.perf_counter()
    try:
        if scheduler is not None:
            try:
                client = distributed.Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise StoreUnavailableError(
                    f"the Dask scheduler at {scheduler}",
                    f"it did not answer within {SCHEDULER_TIMEOUT_S:.0f} s") from exc
        else:
            cluster = distributed.LocalCluster(n_workers=workers or 2, threads_per_worker=1,
                                               processes=True, dashboard_address=":0")
            client = distributed.Client(cluster)
        with client:
            frame = _read(dd, fmt, input_uri, partition_rows, options)
            shipped = client.scatter(pkg, broadcast=True)
            meta, schema = _meta(pkg, frame, partition_rows)
            scored = frame.map_partitions(_score_partition, shipped, partition_rows,
                                          meta=meta, align_dataframes=False)
            good = scored[scored["_rejected"].isnull()].drop(columns=["_rejected"])
            bad = scored[scored["_rejected"].notnull()]
            bad = bad[[c for c in bad.columns if c not in ("prediction", "probabilities",
                                                           "model_version")]]
            bad = bad.rename(columns={"_rejected": "reason"})
            bad = bad.map_partitions(_as_text, meta=_text_meta(bad))
            import pyarrow as pa  # type: ignore[import-untyped]

            text = pa.schema([(str(c), pa.string()) for c in bad.columns])
            writes = [good.to_parquet(output_uri, compute=False, overwrite=overwrite,
                                      write_index=False, storage_options=options,
                                      schema=schema),
                      bad.to_parquet(rejects_uri, compute=False, overwrite=overwrite,
                                     write_index=False, storage_options=options,
                                     schema=text)]
            counts = [good.map_partitions(len).sum(), bad.map_partitions(len).sum()]
            futures = client.compute([*writes, *counts])
            if progress is not None:
                progress(futures)
            results = client.gather(futures)
            rows, rejected = int(results[2]), int(results[3])
    except ModelhostError:
        raise
    except (ValueError, OSError) as exc:
        raise InvalidInputError(_problem(exc)) from exc
    finally:
        if cluster is not None:
            cluster.close()
    return BatchSummary(model=pkg.version.model, version=pkg.version.version, rows=rows,
                        rejected=rejected, seconds=time.perf_counter() - started,
                        output=output_uri, rejects=rejects_uri if rejected else None)


# --- on the workers ---------------------------------------------------------------------

_LOADED: dict[tuple[str, str], Any] = {}  # per worker process: each version loads once


def _scorer(pkg: ModelPackage, *, cache: bool = True) -> Any:
    key = (pkg.version.model, pkg.version.version)
    scorer = _LOADED.get(key) if cache else None
    if scorer is None:
        from modelhost.flavors import get_flavor
        from modelhost.registry.scoring import Scorer
        from modelhost.signature import InputValidator

        with tempfile.TemporaryDirectory(prefix="modelhost-batch-") as tmp:
            root = Path(tmp) / "model"
            for rel, data in pkg.files.items():
                path = confined_path(root, rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            model = get_flavor(pkg.version.flavor).load(root, pkg.version.flavor_meta,
                                                        trust_pickle=pkg.trust_pickle)
        signature = pkg.version.signature
        validator = (InputValidator(signature, max_problems=1_000_000)
                     if signature is not None and signature.inputs else None)
        scorer = Scorer(pkg.version, model, validator=validator)
        if cache:
            _LOADED[key] = scorer
    return scorer


def _score_partition(part: Any, pkg: ModelPackage, chunk_rows: int, *,
                     cache: bool = True) -> Any:
    import numpy as np
    import pandas as pd

    from modelhost.registry.scoring import check_finite

    scorer = _scorer(pkg, cache=cache)
    part = part.reset_index(drop=True)
    if pkg.version.signature is not None:
        part = numbers_from_text(part, pkg.version.signature)
    predictions: list[Any] = [None] * len(part)
    probabilities: list[Any] = [None] * len(part)
    reasons: list[Any] = [None] * len(part)
    for start in range(0, len(part), chunk_rows):
        chunk = part.iloc[start:start + chunk_rows]
        inputs, kept, refused = prepare_rows(scorer, chunk, start)
        for row, reason in refused:
            reasons[row] = reason
        if kept:
            predicted, proba, nonfinite = scorer.run(inputs)
            check_finite(nonfinite)
            values = np.asarray(predicted).tolist()
            probs = proba.tolist() if proba is not None else None
            for i, row in enumerate(kept):
                predictions[row] = values[i]
                if probs is not None:
                    probabilities[row] = probs[i]
    out = part.copy()
    out["prediction"] = pd.Series(predictions, dtype=object)
    out["probabilities"] = pd.Series(probabilities, dtype=object)
    out["model_version"] = pkg.version.version
    out["_rejected"] = pd.Series(reasons, dtype=object)
    return out


def _as_text(part: Any) -> Any:
    """Rejected rows as text: their values may not fit the columns' types."""
    return part.astype(object).where(part.notna(), None).astype("string")


# --- on the driver ----------------------------------------------------------------------


def _meta(pkg: ModelPackage, frame: Any, chunk_rows: int) -> tuple[Any, Any]:
    """The scored output's columns and types, and the Parquet schema of the scored
    rows, from scoring the first rows here (what the model answers sets the types)."""
    import pyarrow as pa

    sample = frame.head(20, npartitions=-1)
    out = _score_partition(sample, pkg, chunk_rows, cache=False)
    meta = out.iloc[:0].copy()
    good = out[out["_rejected"].isna()].drop(columns=["_rejected"])
    if not len(good):
        raise InvalidInputError("the signature refuses every one of the first rows of the "
                                "input: is it the data of this model?")
    good = good.assign(prediction=good["prediction"].infer_objects())
    if good["probabilities"].isna().all():
        good = good.assign(probabilities=pd_none(len(good)))
    schema = pa.Schema.from_pandas(good, preserve_index=False)
    if good["probabilities"].isna().all():
        schema = schema.set(schema.get_field_index("probabilities"),
                            pa.field("probabilities", pa.list_(pa.float64())))
    meta["prediction"] = good["prediction"].iloc[:0]
    return meta, schema


def pd_none(n: int) -> Any:
    import pandas as pd

    return pd.Series([None] * n, dtype=object)


def _text_meta(frame: Any) -> Any:
    return frame._meta.astype("string")


def _read(dd: Any, fmt: str, uri: str, partition_rows: int,
          options: dict[str, Any]) -> Any:
    if fmt == "csv":
        # CSV has no types: read text, and turn the signature's numbers back into
        # numbers per partition (a bad value refuses its row, not its whole column).
        blocksize = max(1 << 20, partition_rows * 64)
        return dd.read_csv(uri, dtype=str, blocksize=blocksize, storage_options=options,
                           keep_default_na=True)
    return dd.read_parquet(uri, storage_options=options)


def _format(uri: str) -> str:
    lowered = uri.lower().rstrip("/")
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".parquet", ".pq")) or "." not in lowered.rsplit("/", 1)[-1]:
        return "parquet"  # a file, or a folder of Parquet files
    raise InvalidInputError(f"the input must be CSV (.csv) or Parquet (.parquet, or a "
                            f"folder of them), got {uri[:120]!r}")


def _check_output(uri: str, *, overwrite: bool, options: dict[str, Any]) -> None:
    import fsspec

    from modelhost.errors import ConflictError

    fs, path = fsspec.core.url_to_fs(uri, **options)
    if fs.exists(path) and not overwrite:
        raise ConflictError(f"{uri} exists; pass --overwrite to replace it")


def _problem(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the input could not be read: {text[:300]}"

