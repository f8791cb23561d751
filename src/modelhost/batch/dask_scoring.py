"""Batch scoring on Dask: a data set that does not fit a request, scored partition by
partition on a cluster, with the version's own scoring kernel.

The driver fetches the version's artifact once (verified, as every load is) and sends
its files to the workers with the flavor, the signature and the version; each worker
process loads the model from them once and keeps it for every partition it scores. Each
partition is checked against the signature: refused rows go to the rejects output with
the reason (``row`` counts from the start of its input file's partition), the others are
scored in model calls of ``partition_rows`` and written with their input columns plus
``prediction``, ``probability_<class>`` per class (when the model has them) and
``model_version``.

Dask loads only here (``pip install 'modelhost[batch]'``).
"""

from __future__ import annotations

import logging
import posixpath
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

log = logging.getLogger(__name__)

DEFAULT_PARTITION_ROWS = 100_000
SCHEDULER_TIMEOUT_S = 10.0

# glibc's allocator settings for the workers of the cluster a run starts. Dask's nanny
# sets MALLOC_TRIM_THRESHOLD_=65536 so that workers hand freed memory back at once; that
# also fixes glibc's mmap threshold at 128 KiB, so every array a model call allocates
# (a RandomForest's 6 MB of probabilities per tree for 250,000 rows) is a fresh mapping
# whose pages fault in again: 430,000 page faults instead of 57,000, and 20% slower
# scoring. Large arrays from the heap (up to glibc's 32 MiB maximum), kept up to 256 MiB
# of free heap: a worker reuses its memory from one call to the next.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 32 << 20, "MALLOC_TRIM_THRESHOLD_": 256 << 20}


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
    import importlib

    try:
        dd: Any = importlib.import_module("dask.dataframe")
        distributed: Any = importlib.import_module("dask.distributed")  # untyped
    except ImportError as exc:
        raise MissingDependencyError("batch scoring", "batch") from exc
    options = dict(storage_options or {})
    places = [_check_output(target, overwrite=overwrite, options=options)
              for target in (output_uri, rejects_uri)]
    if places[0] == places[1]:  # the empty rejects of a run are deleted: not the output
        raise InvalidInputError("the rejects must go elsewhere than the output "
                                f"({output_uri[:120]!r})")
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
            cluster = local_cluster(workers or 2)
            client = distributed.Client(cluster)
        with client:
            frame = _read(dd, fmt, input_uri, partition_rows, options)
            shipped = client.scatter(pkg, broadcast=True)
            delayed = importlib.import_module("dask").delayed
            good_meta, schema = _meta(client.compute(delayed(_scored_head)(
                frame.get_partition(0).to_delayed()[0], shipped, partition_rows)).result())
            bad_meta = _rejects_meta(frame)
            # One task scores a partition into (scored rows, refused rows); both outputs
            # and their counts come from those tasks, computed once.
            scored = [delayed(_score_partition)(part, shipped, partition_rows)
                      for part in frame.to_delayed()]
            good = dd.from_delayed([delayed(_first)(t) for t in scored], meta=good_meta,
                                   verify_meta=False)
            bad = dd.from_delayed([delayed(_second)(t) for t in scored], meta=bad_meta,
                                  verify_meta=False)
            import pyarrow as pa  # type: ignore[import-untyped]

            text = pa.schema([(str(c), pa.string()) for c in bad_meta.columns])
            writes = [good.to_parquet(output_uri, compute=False, overwrite=overwrite,
                                      write_index=False, storage_options=options,
                                      schema=schema, use_dictionary=_dictionary(schema)),
                      bad.to_parquet(rejects_uri, compute=False, overwrite=overwrite,
                                     write_index=False, storage_options=options,
                                     schema=text)]
            # The counts from the same collections (one kind of collection per compute:
            # the scoring tasks they share run once).
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
    if not rejected:  # the rejects are written only when there are some
        _remove_empty(rejects_uri, options)
    return BatchSummary(model=pkg.version.model, version=pkg.version.version, rows=rows,
                        rejected=rejected, seconds=time.perf_counter() - started,
                        output=output_uri, rejects=rejects_uri if rejected else None)


def local_cluster(workers: int) -> Any:
    """A ``LocalCluster`` of ``workers`` single-threaded processes with
    ``WORKER_MALLOC`` (a variable already in the environment wins, as Dask's own do)."""
    import dask
    from dask.distributed import LocalCluster

    environ = {f"distributed.nanny.pre-spawn-environ.{name}": value
               for name, value in WORKER_MALLOC.items()}
    with dask.config.set(environ):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0")  # type: ignore[no-untyped-call]


# --- on the workers ---------------------------------------------------------------------

_LOADED: dict[tuple[str, str], Any] = {}  # per worker process: each version loads once


def _scorer(pkg: ModelPackage) -> Any:
    key = (pkg.version.model, pkg.version.version)
    scorer = _LOADED.get(key)
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
        scorer.warm_up()  # the flavor's fast paths, as a server's
        _LOADED[key] = scorer
    return scorer


def _score_partition(part: Any, pkg: ModelPackage, chunk_rows: int) -> tuple[Any, Any]:
    """(the scored rows, the refused rows with their reason) of one partition."""
    import numpy as np
    import pandas as pd

    from modelhost.registry.scoring import check_finite

    scorer = _scorer(pkg)
    part = part.reset_index(drop=True)
    if pkg.version.signature is not None:
        part = numbers_from_text(part, pkg.version.signature)
    predictions: list[Any] = []
    probabilities: list[Any] = []
    kept_rows: list[int] = []
    reasons: dict[int, str] = {}
    for start in range(0, len(part), chunk_rows):
        inputs, kept, refused = prepare_rows(scorer, part.iloc[start:start + chunk_rows],
                                             start)
        reasons.update(refused)
        if kept:
            predicted, proba, nonfinite = scorer.run(inputs)
            check_finite(nonfinite)
            predictions.append(np.asarray(predicted))
            if proba is not None:
                probabilities.append(np.asarray(proba))
            kept_rows.extend(kept)
    good = part if not reasons else part.iloc[kept_rows].reset_index(drop=True)
    good["prediction"] = (np.concatenate(predictions) if predictions
                          else np.array([], dtype=object))
    if probabilities:
        proba = np.concatenate(probabilities)
        for i, name in enumerate(_class_names(scorer, proba.shape[1])):
            good[name] = proba[:, i]
    good["model_version"] = pkg.version.version
    bad = part.iloc[sorted(reasons)].reset_index(drop=True)
    bad = bad.astype(object).where(bad.notna(), None).astype("string")
    bad["reason"] = pd.array([reasons[r] for r in sorted(reasons)], dtype="string")
    return good, bad


def _scored_head(part: Any, pkg: ModelPackage, chunk_rows: int) -> Any:
    """The first rows of a partition, scored: what the model answers sets the output's
    types. Run on a worker, which loads the model there once for the partitions after
    (the driver then never imports the model's libraries nor reads the data)."""
    good, _ = _score_partition(part.head(20), pkg, chunk_rows)
    return good


def _class_names(scorer: Any, n: int) -> list[str]:
    classes = scorer.model.classes
    labels = classes if classes is not None and len(classes) == n else range(n)
    return [f"probability_{label}" for label in labels]


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _second(pair: tuple[Any, Any]) -> Any:
    return pair[1]


# --- on the driver ----------------------------------------------------------------------


def _meta(good: Any) -> tuple[Any, Any]:
    """The scored output's columns and types, and its Parquet schema, from the first
    rows as scored (``_scored_head``)."""
    import pyarrow as pa

    if not len(good):
        raise InvalidInputError("the signature refuses every one of the first rows of the "
                                "input: is it the data of this model?")
    return good.iloc[:0], pa.Schema.from_pandas(good, preserve_index=False)


def _dictionary(schema: Any) -> list[str]:
    """The output's columns worth dictionary-encoding: all but the floating-point ones.
    Parquet's writer tries a dictionary for every column by default and gives up on
    columns of mostly distinct values only once the dictionary has grown large; on
    float features and probabilities that attempt was most of the time spent writing
    (a 250,000-row partition of 24 float columns: 540 ms with it, 70 ms without)."""
    import pyarrow as pa

    return [field.name for field in schema if not pa.types.is_floating(field.type)]


def _rejects_meta(frame: Any) -> Any:
    import pandas as pd

    meta = frame._meta.astype("string")
    meta["reason"] = pd.array([], dtype="string")
    return meta


def _read(dd: Any, fmt: str, uri: str, partition_rows: int,
          options: dict[str, Any]) -> Any:
    """Partitions of about ``partition_rows`` rows: CSV cut in blocks of that many rows'
    bytes (from the first file's first lines), Parquet one partition per row group."""
    if fmt == "csv":
        # CSV has no types: read text, and turn the signature's numbers back into
        # numbers per partition (a bad value refuses its row, not its whole column).
        blocksize = max(1 << 20, partition_rows * _bytes_per_row(uri, options))
        return dd.read_csv(uri, dtype=str, blocksize=blocksize, storage_options=options,
                           keep_default_na=True)
    return dd.read_parquet(uri, storage_options=options, split_row_groups=True)


def _bytes_per_row(uri: str, options: dict[str, Any]) -> int:
    import fsspec

    files = fsspec.open_files(uri, mode="rb", **options)
    if not files:
        raise InvalidInputError(f"no file matches {uri[:120]!r}")
    with files[0] as f:
        head: bytes = f.read(1 << 16)
    lines: int = max(1, head.count(b"\n"))
    return max(1, len(head) // lines)


def _format(uri: str) -> str:
    lowered = uri.lower().rstrip("/")
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".parquet", ".pq")) or "." not in lowered.rsplit("/", 1)[-1]:
        return "parquet"  # a file, or a folder of Parquet files
    raise InvalidInputError(f"the input must be CSV (.csv) or Parquet (.parquet, or a "
                            f"folder of them), got {uri[:120]!r}")


def _check_output(uri: str, *, overwrite: bool, options: dict[str, Any]
                  ) -> tuple[str, str]:
    """Where ``uri`` points (its file system's protocol and its normalized path), once
    it is known to be writable and free (or ``overwrite``)."""
    import fsspec

    from modelhost.errors import ConflictError

    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
        exists = fs.exists(path)
    except (ValueError, ImportError, OSError) as exc:  # an unknown scheme, a bad option
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InvalidInputError(f"the output {uri[:120]!r} cannot be written: "
                                f"{reason}") from exc
    if exists and not overwrite:
        raise ConflictError(f"{uri} exists; pass --overwrite to replace it")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol, posixpath.normpath(path)


def _remove_empty(uri: str, options: dict[str, Any]) -> None:
    """Delete the rejects this run wrote at ``uri`` when it refused nothing (they were
    written beside the counts, in one pass). The scored output is whole by then: a
    failure leaves the empty files and a warning, not a failed run."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError as exc:
        log.warning("the empty rejects at %s could not be deleted: %s", uri[:120],
                    type(exc).__name__)


def _problem(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the input could not be read: {text[:300]}"

