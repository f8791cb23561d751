"""The semver rule: the smallest version bump between two signatures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from modelhost.entities import Bump, ColumnSpec, Signature, Spec, TensorSpec

__all__ = ["compare_signatures"]


def compare_signatures(old: Signature | None, new: Signature | None) -> tuple[Bump, str]:
    """The smallest semver bump from a version with ``old`` to one with ``new`` (PRODUCT.md §1).

    MAJOR: an input column dropped, retyped, newly required (added as required, or optional
    turned required) or no longer nullable; any change of input tensors; a switch between
    column and tensor inputs; an output dropped or retyped; the signature removed.
    MINOR: only optional inputs or outputs added, inputs relaxed (nullable, optional), or a
    signature added where there was none (the old version accepted its inputs unchecked, so
    every client that got predictions from it still sends what the model can use).
    PATCH: the same contract. The reason names the changes that decide the bump.
    """
    if old is None or new is None:
        if old is None and new is None:
            return Bump.PATCH, "same contract (neither version has a signature)"
        if old is None:
            return Bump.MINOR, "adds a signature"
        return Bump.MAJOR, "drops the signature"
    changes = [*_compare_specs(old.inputs, new.inputs, "input"),
               *_compare_specs(old.outputs, new.outputs, "output")]
    if not changes:
        return Bump.PATCH, "same contract"
    top = max(bump for bump, _ in changes)
    reasons = [reason for bump, reason in changes if bump is top]
    more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    return top, "; ".join(reasons[:3]) + more


def _compare_specs(old: Sequence[Spec], new: Sequence[Spec], role: str) -> list[tuple[Bump, str]]:
    old_tensor = any(isinstance(s, TensorSpec) for s in old)
    new_tensor = any(isinstance(s, TensorSpec) for s in new)
    if old and new and old_tensor != new_tensor:
        kinds = ("columns", "tensors") if new_tensor else ("tensors", "columns")
        return [(Bump.MAJOR, f"switches {role}s from {kinds[0]} to {kinds[1]}")]
    if old_tensor or new_tensor:
        return _compare_tensors(old, new, role)
    return _compare_columns([s for s in old if isinstance(s, ColumnSpec)],
                            [s for s in new if isinstance(s, ColumnSpec)], role)


def _compare_columns(old: list[ColumnSpec], new: list[ColumnSpec],
                     role: str) -> list[tuple[Bump, str]]:
    is_input = role == "input"
    before = {c.name: c for c in old}
    after = {c.name: c for c in new}
    changes: list[tuple[Bump, str]] = []
    for a in old:
        b = after.get(a.name)
        what = f"{role} column {a.name!r}"
        if b is None:
            changes.append((Bump.MAJOR, f"drops {what}"))
            continue
        if a.type is not b.type:
            changes.append((Bump.MAJOR, f"changes type of {what} from {a.type.value} "
                                        f"to {b.type.value}"))
        if is_input and a.required != b.required:
            changes.append((Bump.MINOR, f"makes {what} optional") if a.required
                           else (Bump.MAJOR, f"makes {what} required"))
        if a.nullable != b.nullable:
            # Inputs may relax (accept nulls); outputs may tighten (never send nulls).
            relaxes = b.nullable if is_input else not b.nullable
            word = "nullable" if b.nullable else "non-nullable"
            changes.append((Bump.MINOR if relaxes else Bump.MAJOR, f"makes {what} {word}"))
    for b in new:
        if b.name not in before:
            if not is_input:
                changes.append((Bump.MINOR, f"adds output column {b.name!r}"))
            elif b.required:
                changes.append((Bump.MAJOR, f"adds required input column {b.name!r}"))
            else:
                changes.append((Bump.MINOR, f"adds optional input column {b.name!r}"))
    return changes


def _compare_tensors(old: Sequence[Spec], new: Sequence[Spec],
                     role: str) -> list[tuple[Bump, str]]:
    changes: list[tuple[Bump, str]] = []
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        assert isinstance(a, TensorSpec)
        assert isinstance(b, TensorSpec)
        what = f"{role} tensor {a.name!r}" if a.name else f"{role} tensor #{i}"
        if a.name != b.name:
            changes.append((Bump.MAJOR, f"renames {what} to {b.name!r}"))
        if a.dtype != b.dtype:
            changes.append((Bump.MAJOR, f"changes dtype of {what} from {a.dtype} to {b.dtype}"))
        if a.shape != b.shape:
            changes.append((Bump.MAJOR, f"changes shape of {what} from {_shape(a.shape)} "
                                        f"to {_shape(b.shape)}"))
    added_bump = Bump.MINOR if role == "output" else Bump.MAJOR
    changes += [(added_bump, f"adds {role} tensor #{i}") for i in range(len(old), len(new))]
    changes += [(Bump.MAJOR, f"drops {role} tensor #{i}") for i in range(len(new), len(old))]
    return changes


def _shape(shape: Iterable[int]) -> str:
    # As the validator writes shapes; kept here so that comparing (the registry, the CLI)
    # does not import numpy.
    return str(tuple(shape))
