"""The flavor interface: how a model is saved, recognised, imported and loaded.

A :class:`Flavor` turns a Python object or a file on disk into a folder of files plus a
JSON-able ``meta`` dict, and turns that folder and ``meta`` back into a
:class:`LoadedModel`. The registry stores the folder (content-addressed) and ``meta``
(with the version); neither side knows the other's format.

Flavors are stateless apart from options given to their constructor, and constructors do
no I/O, so one instance may serve many threads. Their ``save``, ``import_path`` and
``load`` run one at a time per process, under :data:`LOAD_LOCK` (see there).
"""

from __future__ import annotations

import abc
import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelhost.entities import Signature

_F = TypeVar("_F", bound=Callable[..., Any])

LOAD_LOCK = threading.RLock()
"""Held by whatever may import a module for the first time while building a model: the
flavor registry importing a flavor, and every flavor's ``save``, ``import_path`` and
``load`` (which import scikit-learn, skops, onnxruntime, and the classes a model file
names). Python's import system does not make first imports of large packages safe from
several threads at once: a second thread can see a partly initialised module ("module
'skops' has no attribute 'io'", "cannot import name 'clone' from 'sklearn.base'") or hit a
``_DeadlockError`` between two packages that import each other. So those first imports
happen one thread at a time. Reentrant: a flavor may load while it saves. The model
pool holds it while it loads and warms up a version, as warming up imports too."""


def _serialized(method: _F) -> _F:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with LOAD_LOCK:
            return method(*args, **kwargs)

    locked.__dict__["__serialized__"] = True
    return locked  # type: ignore[return-value]


class LoadedModel(abc.ABC):
    """A model ready to predict on a batch.

    Implementations are safe to call from several threads at once.
    """

    @abc.abstractmethod
    def predict(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> np.ndarray:
        """Predict one value per row.

        Args:
            X: a DataFrame with the training columns, a 2-D array with the columns in
                training order, or a mapping of input name to array.

        Returns:
            A 1-D array (2-D for multi-output models) with one entry per input row.

        Raises:
            InvalidInputError: the input cannot be given to the model (missing inputs,
                wrong rank).
        """

    def predict_proba(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> np.ndarray | None:
        """Class probabilities, shape ``(n_rows, n_classes)``, or None without them.

        Columns follow :attr:`classes` when that is known.
        """
        return None

    @property
    def has_proba(self) -> bool:
        """Whether :meth:`predict_proba` returns probabilities."""
        return False

    def predict_with_proba(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions and probabilities (or None) in one call: what serving uses.

        Implementations may share work between the two (e.g. take the predicted class
        as the most probable one when that is what ``predict`` does).
        """
        predictions = self.predict(X)
        return predictions, self.predict_proba(X) if self.has_proba else None

    def accepts_array(self, columns: list[str]) -> bool:
        """Whether a plain 2-D array with these columns, in this order, is as good an
        input as a DataFrame (decided by :meth:`warm_up`; False when unsure)."""
        return False

    def warm_up(self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]) -> None:
        """Run once on an input example before the model takes traffic.

        Implementations may also choose and verify faster code paths here.
        """
        self.predict_with_proba(X)

    @property
    def classes(self) -> list[Any] | None:
        """Class labels in probability column order, when known."""
        return None

    @property
    def array_kernel(self) -> bool:
        """Whether a float64 array in the accepted column order is scored by verified
        array arithmetic alone (decided by :meth:`warm_up`; False when unsure)."""
        return False


@dataclass(frozen=True)
class SavedModel:
    """What a flavor reports after writing a model's files.

    Attributes:
        meta: JSON-able facts the flavor needs to load the files again (format, file
            name, trusted types, ...). Stored with the version, handed back to
            :meth:`Flavor.load`.
        signature: a signature found inside the artifact (an MLflow ``MLmodel``), else
            None; the registry infers one from data otherwise.
        input_example: an input example found inside the artifact (a DataFrame, an
            ndarray or a mapping of name to ndarray), else None.
    """

    meta: dict[str, Any]
    signature: Signature | None = None
    input_example: Any = None


class Flavor(abc.ABC):
    """How one family of models is saved and loaded.

    Every method that reads a model file refuses formats that can run code when loaded
    (pickle and friends, skops files with types outside skops' safe list) unless
    ``trust_pickle`` is true, and raises ``ModelLoadError`` with a message free of
    file system paths when the files do not load.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every implementation of ``save``, ``import_path`` and ``load`` runs under
        :data:`LOAD_LOCK`, so that no flavor can forget to take it."""
        super().__init_subclass__(**kwargs)
        for name in ("save", "import_path", "load"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__serialized__", False):
                setattr(cls, name, _serialized(method))

    @abc.abstractmethod
    def can_save(self, model: object) -> bool:
        """Whether :meth:`save` accepts this Python object. Never raises, no I/O."""

    @abc.abstractmethod
    def save(self, model: object, dest: Path) -> SavedModel:
        """Write the model's files into the empty folder ``dest``.

        The registrant hands over the live object, so the types it is made of are
        recorded as trusted for later loads.

        Raises:
            InvalidInputError: this flavor cannot save the object (the message says what
                to do instead). ``dest`` is left as it was.
        """

    @abc.abstractmethod
    def detect(self, path: Path) -> bool:
        """Whether the file or folder at ``path`` looks like a model of this flavor.

        Cheap: looks at names, never loads the model.
        """

    @abc.abstractmethod
    def import_path(self, src: Path, dest: Path, *, trust_pickle: bool = False) -> SavedModel:
        """Copy a model file or folder from disk into the empty folder ``dest``.

        The copy is checked to load (and to predict as the flavor promises) before this
        returns.

        Raises:
            UntrustedArtifactError: the file can run code when loaded and
                ``trust_pickle`` is false. Nothing has been read with pickle and nothing
                has been written into ``dest``.
            ModelLoadError: the file does not load. ``dest`` is left as it was.
        """

    @abc.abstractmethod
    def load(
        self, src: Path, meta: Mapping[str, Any], *, trust_pickle: bool = False
    ) -> LoadedModel:
        """Load the folder written by :meth:`save` or :meth:`import_path`.

        Args:
            src: that folder.
            meta: the ``SavedModel.meta`` returned when it was written.
            trust_pickle: allow pickle-based files even if they were not trusted when
                they were registered.

        Raises:
            UntrustedArtifactError: pickle-based files that were never trusted.
            ModelLoadError: the files do not load.
            MissingDependencyError: the flavor's optional runtime is not installed.
        """
