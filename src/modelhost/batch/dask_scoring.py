"""Batch scoring on Dask: a data set that does not fit a request, scored piece by piece
on a cluster, with the version's own scoring kernel.

The driver fetches the version's artifact once (verified, as every load is) and sends
its files to the workers with the flavor, the signature and the version; each worker
process loads the model from them once and keeps it for every piece it scores. The
driver only plans (``batch.pieces``): one task per Parquet row group or CSV byte range
reads it, checks it against the signature, scores it and writes its part of the output
on the worker that runs it, so that no rows cross the network. Refused rows go to the
rejects output, as text, with the reason; the others are scored in model calls of
``partition_rows`` and written with their input columns plus ``prediction``,
``probability_<class>`` per class (when the model has them) and ``model_version``.

Dask loads only here (``pip install 'modelhost[batch]'``).
"""

from __future__ import annotations

import contextlib
import posixpath
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost._paths import confined_path
from modelhost.artifacts.fsspec_store import backend_errors
from modelhost.batch.pieces import (
    Piece,
    csv_pieces,
    input_format,
    iter_piece,
    list_files,
    parquet_pieces,
    read_piece,
    row_group_count,
)
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

# glibc's allocator settings for the workers of the cluster a run starts. Dask's nanny
# sets MALLOC_TRIM_THRESHOLD_=65536 so that workers hand freed memory back at once; that
# also fixes glibc's mmap threshold at 128 KiB, so every array a model call allocates
# (a RandomForest's 6 MB of probabilities per tree for 250,000 rows) is a fresh mapping
# whose pages fault in again: 430,000 page faults instead of 57,000, and 20% slower
# scoring. Large arrays from the heap (up to glibc's 32 MiB maximum), kept up to 256 MiB
# of free heap: a worker reuses its memory from one call to the next.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 32 << 20, "MALLOC_TRIM_THRESHOLD_": 256 << 20}


Target = tuple[str, Mapping[str, Any]]  # an output's URL and its storage options


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

    The driver only plans: one task per piece of the input (a Parquet row group, a CSV
    byte range) reads it, scores it and writes its part of the output and of the
    rejects on the worker that runs it, and returns its counts.

    Raises:
        InvalidInputError: no data at ``input_uri``, not CSV or Parquet, or
            ``partition_rows`` below 1.
        ConflictError: ``output_uri`` (or ``rejects_uri``) exists and not ``overwrite``.
        StoreUnavailableError: the scheduler did not answer or has no workers, or the
            object store of the input or the output did not answer.
        MissingDependencyError: Dask is not installed.
    """
    if partition_rows < 1:
        raise InvalidInputError(f"--partition-rows must be at least 1, got {partition_rows}")
    import importlib

    try:
        distributed: Any = importlib.import_module("dask.distributed")  # untyped
    except ImportError as exc:
        raise MissingDependencyError("batch scoring", "batch") from exc
    given = dict(storage_options or {})
    options = _options_for(input_uri, given)
    fmt = input_format(input_uri)
    cluster = None
    started = time.perf_counter()
    try:
        places = [_check_output(target, overwrite=overwrite,
                                options=_options_for(target, given))
                  for target in (output_uri, rejects_uri)]
        if places[0] == places[1]:
            raise InvalidInputError("the rejects must go elsewhere than the output "
                                    f"({output_uri[:120]!r})")
        fs, files = list_files(input_uri, fmt, options)
        _refuse_replacing_input(fs, files, places)
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
            addresses = list(client.scheduler_info()["workers"])
            if not addresses:
                raise StoreUnavailableError(f"the Dask scheduler at {scheduler or 'local'}",
                                            "it has no workers")
            if fmt == "csv":
                pieces = csv_pieces(fs, files, partition_rows)
            else:
                counts = client.gather(client.map(row_group_count, files, options=options,
                                                  pure=False))
                pieces = parquet_pieces(files, counts)
            if not pieces:
                raise InvalidInputError(f"no rows in {input_uri[:120]!r}")
            shipped = client.scatter(pkg, broadcast=True)
            # The output's types come from the first rows as the model scores them, on
            # one worker, while the others load the model too (a 100-tree RandomForest
            # takes 2 s): every worker keeps it for the pieces after.
            # (Where a worker leaves meanwhile, another takes its task.)
            first, *others = addresses[:len(pieces)]
            loading = [client.submit(_load, shipped, workers=[w], allow_other_workers=True,
                                     pure=False) for w in others]
            schemas = client.submit(_schemas, pieces[0], shipped, options,
                                    workers=[first], allow_other_workers=True,
                                    pure=False).result()
            targets = [_prepare_output(place, _options_for(place, given))
                       for place in (output_uri, rejects_uri)]
            futures = client.map(_score_piece, pieces, range(len(pieces)),
                                 pkg=shipped, schemas=schemas, output=targets[0],
                                 rejects=targets[1], options=options,
                                 chunk_rows=partition_rows, pure=False)
            if progress is not None:
                progress(futures)
            done = client.gather(futures)
            client.gather(loading)  # long done: a worker loads before its first piece
            rows, rejected = sum(d[0] for d in done), sum(d[1] for d in done)
    except ModelhostError:
        raise
    except (ValueError, OSError) as exc:
        raise InvalidInputError(_problem(exc)) from exc
    except backend_errors() as exc:  # an object store that does not answer (botocore...)
        raise StoreUnavailableError("the storage of the input or the output",
                                    type(exc).__name__) from exc
    finally:
        if cluster is not None:
            cluster.close()
    return BatchSummary(model=pkg.version.model, version=pkg.version.version, rows=rows,
                        rejected=rejected, seconds=time.perf_counter() - started,
                        output=output_uri, rejects=rejects_uri if rejected else None)


def local_cluster(workers: int) -> Any:
    """A ``LocalCluster`` of ``workers`` single-threaded processes with
    ``WORKER_MALLOC`` (a variable already in the environment wins, as Dask's own do),
    and without the workers' statistical profiler: it samples every thread's stack
    every 10 ms, on the core the scoring runs on (a piece took 3% longer with it), for
    a dashboard that nobody watches on a cluster that lives as long as the run."""
    import dask
    from dask.distributed import LocalCluster

    settings: dict[str, Any] = {f"distributed.nanny.pre-spawn-environ.{name}": value
                                for name, value in WORKER_MALLOC.items()}
    settings["distributed.worker.profile.enabled"] = False
    with dask.config.set(settings):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0")  # type: ignore[no-untyped-call]


# --- on the workers ---------------------------------------------------------------------

# Per worker process: the scorers of the last versions it scored, by name, version and
# the artifact's digest. Not by name and version alone: a long-running cluster serves
# the registries of many users and projects, each with its own "churn 1.0.0". Bounded,
# so that a cluster that scores version after version keeps only the latest few.
_LOADED: dict[tuple[str, str, str], Any] = {}
KEEP_LOADED = 2


def _scorer(pkg: ModelPackage) -> Any:
    key = (pkg.version.model, pkg.version.version, pkg.version.artifact_digest)
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
        while len(_LOADED) >= KEEP_LOADED:
            _LOADED.pop(next(iter(_LOADED)))  # the one loaded first
        _LOADED[key] = scorer
    return scorer


def _score_chunk(part: Any, pkg: ModelPackage) -> tuple[Any, Any]:
    """(the scored rows, the refused rows with their reason) of one model call's rows."""
    import numpy as np
    import pandas as pd

    from modelhost.registry.scoring import check_finite

    scorer = _scorer(pkg)
    part = part.reset_index(drop=True)
    if pkg.version.signature is not None:
        part = numbers_from_text(part, pkg.version.signature)
    inputs, kept, refused = prepare_rows(scorer, part, 0)
    reasons = dict(refused)
    good = part if not reasons else part.iloc[kept].reset_index(drop=True)
    if not kept:
        good["prediction"] = np.array([], dtype=object)
    else:
        predicted, proba, nonfinite = scorer.run(inputs)
        check_finite(nonfinite)
        good["prediction"] = np.asarray(predicted)
        if proba is not None:
            proba = np.asarray(proba)
            for i, name in enumerate(_class_names(scorer, proba.shape[1])):
                good[name] = proba[:, i]
    good["model_version"] = pkg.version.version
    bad = part.iloc[sorted(reasons)].reset_index(drop=True)
    bad = bad.astype(object).where(bad.notna(), None).astype("string")
    bad["reason"] = pd.array([reasons[r] for r in sorted(reasons)], dtype="string")
    return good, bad


def _load(pkg: ModelPackage) -> None:
    _scorer(pkg)


def _schemas(piece: Piece, pkg: ModelPackage, options: Mapping[str, Any]
             ) -> tuple[bytes, bytes]:
    """The Parquet schemas of the output and of the rejects (serialized: the driver
    passes them on without reading them), from the first rows of ``piece`` as scored:
    what the model answers sets the output's types."""
    import pyarrow as pa  # type: ignore[import-untyped]

    part = read_piece(piece, options, head=20)  # not the whole piece: it waits for this
    if not len(part):
        raise InvalidInputError("the input's first part has no rows")
    good, _ = _score_chunk(part, pkg)
    if not len(good):
        raise InvalidInputError("the signature refuses every one of the first rows of the "
                                "input: is it the data of this model?")
    scored = pa.Schema.from_pandas(good, preserve_index=False)
    text = pa.schema([(str(c), pa.string()) for c in part.columns]
                     + [("reason", pa.string())])
    return scored.serialize().to_pybytes(), text.serialize().to_pybytes()


def _score_piece(piece: Piece, index: int, *, pkg: ModelPackage,
                 schemas: tuple[bytes, bytes], output: Target, rejects: Target,
                 options: Mapping[str, Any], chunk_rows: int) -> tuple[int, int]:
    """Read, score and write one piece, ``chunk_rows`` rows at a time (a worker holds
    one model call's rows, not a whole row group): its scored rows as
    ``part.<index>.parquet`` of the output (an empty file when it has none, so that
    every part has the schema), its refused rows under the same name in the rejects
    (only when there are some). A piece that fails leaves no part behind."""
    import pyarrow as pa

    scored, text = (pa.ipc.read_schema(pa.py_buffer(b)) for b in schemas)
    name = f"part.{index:06d}.parquet"
    rows = rejected = 0
    with _Part(output, name, scored) as good_part, _Part(rejects, name, text) as bad_part:
        for part in iter_piece(piece, options, chunk_rows):
            if [str(c) for c in part.columns] != text.names[:-1]:
                raise InvalidInputError(f"{piece.path[-120:]} does not have the columns "
                                        "of the input's first file")
            good, bad = _score_chunk(part, pkg)
            if len(good):
                good_part.write(pa.Table.from_pandas(good, schema=scored,
                                                     preserve_index=False))
            if len(bad):
                bad_part.write(pa.Table.from_pandas(bad, schema=text, preserve_index=False))
            rows, rejected = rows + len(good), rejected + len(bad)
        if not rows:
            good_part.write(scored.empty_table())  # the part exists, with the schema
    return rows, rejected


class _Part:
    """A part file of an output, written a table (a row group) at a time and created
    at the first. Removed when the piece fails: a run that fails part-way leaves
    whole parts only."""

    def __init__(self, target: Target, name: str, schema: Any) -> None:
        self._target, self._name, self._schema = target, name, schema
        self._fs: Any = None
        self._path = ""
        self._file: Any = None
        self._writer: Any = None

    def write(self, table: Any) -> None:
        if self._writer is None:
            import fsspec
            import pyarrow.parquet as pq  # type: ignore[import-untyped]

            folder, options = self._target
            self._fs, path = fsspec.core.url_to_fs(folder, **options)
            self._fs.makedirs(path, exist_ok=True)
            self._path = posixpath.join(path, self._name)
            self._file = self._fs.open(self._path, "wb")
            self._writer = pq.ParquetWriter(self._file, self._schema,
                                            use_dictionary=_dictionary(self._schema))
        self._writer.write_table(table)

    def __enter__(self) -> _Part:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self._writer is None:
            return
        if kind is None:
            self._writer.close()
            self._file.close()
            return
        with contextlib.suppress(Exception):  # the piece's own error is the one to see
            self._writer.close()
            self._file.close()
        with contextlib.suppress(Exception):
            self._fs.rm(self._path)


def _class_names(scorer: Any, n: int) -> list[str]:
    classes = scorer.model.classes
    labels = classes if classes is not None and len(classes) == n else range(n)
    return [f"probability_{label}" for label in labels]


def _dictionary(schema: Any) -> list[str]:
    """The output's columns worth dictionary-encoding: all but the floating-point ones.
    Parquet's writer tries a dictionary for every column by default and gives up on
    columns of mostly distinct values only once the dictionary has grown large; on
    float features and probabilities that attempt was most of the time spent writing
    (a 250,000-row partition of 24 float columns: 540 ms with it, 70 ms without)."""
    import pyarrow as pa

    return [field.name for field in schema if not pa.types.is_floating(field.type)]


# --- on the driver ----------------------------------------------------------------------


def _prepare_output(uri: str, options: Mapping[str, Any]) -> Target:
    """``uri``, emptied of a previous run's files (``_check_output`` has refused an
    existing one unless asked to replace it): once the first rows have scored, so that
    a run refused by then leaves it as it was."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **options)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    return uri, options


def _options_for(uri: str, options: dict[str, Any]) -> dict[str, Any]:
    """The storage options for ``uri``: those given, for an object store's URL; none
    for a local path (they name an object store's settings)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    return options if scheme not in ("file", "local") else {}


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


def _refuse_replacing_input(fs: Any, files: list[str],
                            places: list[tuple[str, str]]) -> None:
    """An output (or rejects) replaced with ``--overwrite`` is emptied before the
    pieces are read: it must not hold the input."""
    import fsspec

    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    paths = [posixpath.normpath(fsspec.core.strip_protocol(f)) for f in files]
    for place_protocol, place in places:
        if place_protocol == protocol and any(
                p == place or p.startswith(place.rstrip("/") + "/") for p in paths):
            raise InvalidInputError("the output and the rejects must not hold the input; "
                                    "write them elsewhere")


def _problem(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the input could not be read: {text[:300]}"

