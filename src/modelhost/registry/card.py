"""Model cards in Markdown and HTML, generated from what the registry knows.

Both formats render the same list of blocks, so they never disagree.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass

from modelhost.entities import ColumnSpec, ModelVersion, StageChange, TensorSpec


@dataclass(frozen=True)
class _Heading:
    text: str


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Code:
    text: str


_Block = _Heading | _Para | _Table | _Code


def _blocks(mv: ModelVersion, history: Sequence[StageChange]) -> list[_Block]:
    out: list[_Block] = []
    if mv.description:
        out.append(_Para(mv.description))
    facts = [("Version", mv.version), ("Stage", mv.stage.value), ("Flavor", mv.flavor),
             ("Aliases", ", ".join(mv.aliases) or "-"),
             ("Registered", mv.created_at.strftime("%Y-%m-%d %H:%M UTC")),
             ("Artifact", f"sha256:{mv.artifact_digest} ({mv.artifact_size:,} bytes)")]
    if mv.sunset:
        facts.append(("Deprecated", f"yes, sunset on {mv.sunset.isoformat()}"))
    facts += sorted(mv.tags.items())
    out += [_Heading("Overview"), _Table(("Field", "Value"), tuple(facts))]

    out.append(_Heading("Inputs"))
    if mv.signature is None or not mv.signature.inputs:
        out.append(_Para("No signature was recorded: inputs are not validated."))
    else:
        out.append(_spec_table(mv.signature.inputs))
        if mv.signature.outputs:
            out += [_Heading("Outputs"), _spec_table(mv.signature.outputs)]
    if mv.input_example is not None:
        out += [_Heading("Input example"), _Code(json.dumps(mv.input_example, indent=2))]

    out.append(_Heading("Metrics"))
    out.append(_Table(("Metric", "Value"), tuple(
        (k, f"{v:.6g}") for k, v in sorted(mv.metrics.items())))
        if mv.metrics else _Para("No metrics were recorded."))
    if mv.params:
        out += [_Heading("Parameters"),
                _Table(("Parameter", "Value"), tuple(sorted(mv.params.items())))]

    lin = mv.lineage
    out += [_Heading("Lineage"), _Table(("Field", "Value"), (
        ("Run", lin.run_id or "-"),
        ("Datasets", ", ".join(lin.dataset_versions) or "-"),
        ("Git commit", lin.git_commit or "-"),
        ("Python", lin.python_version or "-"),
        *((f"package {k}", v) for k, v in sorted(lin.packages.items())),
    ))]
    if history:
        out += [_Heading("Stage history"), _Table(("When", "From", "To", "Reason"), tuple(
            (c.at.strftime("%Y-%m-%d %H:%M UTC"), c.from_stage.value, c.to_stage.value,
             c.reason or "-") for c in history))]
    return out


def _spec_table(specs: Sequence[ColumnSpec | TensorSpec]) -> _Table:
    rows = []
    for spec in specs:
        if isinstance(spec, ColumnSpec):
            rows.append((spec.name, spec.type.value, "yes" if spec.required else "no",
                         "yes" if spec.nullable else "no"))
        else:
            rows.append((spec.name or "(tensor)", f"{spec.dtype} {list(spec.shape)}",
                         "yes", "no"))
    return _Table(("Name", "Type", "Required", "Nullable"), tuple(rows))


def render_markdown(mv: ModelVersion, history: Sequence[StageChange] = ()) -> str:
    lines = [f"# Model card: {mv.model} {mv.version}", ""]
    for block in _blocks(mv, history):
        if isinstance(block, _Heading):
            lines += [f"## {block.text}", ""]
        elif isinstance(block, _Para):
            lines += [block.text, ""]
        elif isinstance(block, _Code):
            lines += ["```json", block.text, "```", ""]
        else:
            lines.append("| " + " | ".join(block.headers) + " |")
            lines.append("|" + "---|" * len(block.headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_html(mv: ModelVersion, history: Sequence[StageChange] = ()) -> str:
    esc = html.escape
    title = esc(f"Model card: {mv.model} {mv.version}")
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{title}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
             "padding:0 1rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:.25rem .5rem;text-align:left}pre{background:#f6f6f6;padding:.5rem;"
             "overflow:auto}</style></head><body>", f"<h1>{title}</h1>",
             render_fragment(mv, history), "</body></html>"]
    return "\n".join(parts)


def render_fragment(mv: ModelVersion, history: Sequence[StageChange] = (), *,
                    heading: str = "h2", table_class: str = "") -> str:
    """The card's sections as HTML to put inside a page (the web console's), every
    value escaped: ``heading`` tags its section titles, ``table_class`` classes its
    tables."""
    esc = html.escape
    table = f'<table class="{esc(table_class)}">' if table_class else "<table>"
    parts = []
    for block in _blocks(mv, history):
        if isinstance(block, _Heading):
            parts.append(f"<{heading}>{esc(block.text)}</{heading}>")
        elif isinstance(block, _Para):
            parts.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, _Code):
            parts.append(f"<pre><code>{esc(block.text)}</code></pre>")
        else:
            head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                           for row in block.rows)
            parts.append(f"{table}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(parts)
