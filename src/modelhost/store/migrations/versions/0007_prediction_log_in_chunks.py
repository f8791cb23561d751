"""prediction log in chunks with a request-id table

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:45:00.000000

The log of one row per request becomes one row per chunk of up to 500 requests of a
model version, and a narrow table from request id to chunk and position. Logged
requests are carried over in the order they were made.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

CHUNK = 500
_tz = sa.DateTime(timezone=True)

old_log = sa.table('prediction_log', sa.column('request_id', sa.String), sa.column('model', sa.String),
                   sa.column('version', sa.String), sa.column('arm', sa.String),
                   sa.column('at', _tz), sa.column('rows', sa.Integer),
                   sa.column('inputs', sa.Text), sa.column('outputs', sa.Text))
chunks = sa.table('prediction_chunks', sa.column('id', sa.Integer), sa.column('model', sa.String),
                  sa.column('version', sa.String), sa.column('first_at', _tz),
                  sa.column('last_at', _tz), sa.column('requests', sa.Integer),
                  sa.column('entries', sa.Text), sa.column('columns', sa.Text),
                  sa.column('inputs', sa.Text), sa.column('outputs', sa.Text),
                  sa.column('table', sa.LargeBinary))
ids = sa.table('prediction_ids', sa.column('request_id', sa.String),
               sa.column('chunk', sa.Integer), sa.column('position', sa.Integer))


def _utc(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.timezone.utc) if at.tzinfo is None else at


def upgrade() -> None:
    op.create_table('prediction_chunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('entries', sa.Text(), nullable=False),
    sa.Column('columns', sa.Text(), nullable=True),
    sa.Column('inputs', sa.Text(), nullable=False),
    sa.Column('outputs', sa.Text(), nullable=False),
    sa.Column('table', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction_chunks'))
    )
    op.create_index('ix_prediction_chunks_last_at', 'prediction_chunks', ['last_at'],
                    unique=False)
    op.create_index('ix_prediction_chunks_model_version_last_at', 'prediction_chunks',
                    ['model', 'version', 'last_at'], unique=False)
    op.create_table('prediction_ids',
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('chunk', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_prediction_ids')),
    sqlite_with_rowid=False
    )
    _copy_rows_into_chunks()
    op.drop_index('ix_prediction_log_model_version_at', table_name='prediction_log')
    op.drop_index('ix_prediction_log_at', table_name='prediction_log')
    op.drop_table('prediction_log')


def _copy_rows_into_chunks() -> None:
    bind = op.get_bind()
    part: list[Any] = []
    for row in bind.execute(sa.select(old_log).order_by(old_log.c.model, old_log.c.version,
                                                        old_log.c.at)):
        if part and (len(part) == CHUNK or (part[0].model, part[0].version)
                     != (row.model, row.version)):
            _write_chunk(bind, part)
            part = []
        part.append(row)
    if part:
        _write_chunk(bind, part)


def _write_chunk(bind: Any, part: list[Any]) -> None:
    at = [_utc(r.at).timestamp() for r in part]
    entries = {"request_ids": [r.request_id for r in part], "at": at,
               "rows": [r.rows for r in part], "arms": [r.arm for r in part],
               "tabular": [0] * len(part)}
    chunk = bind.execute(sa.insert(chunks).values(
        model=part[0].model, version=part[0].version, first_at=_utc(part[0].at),
        last_at=_utc(part[-1].at), requests=len(part), entries=orjson.dumps(entries).decode(),
        columns=None, inputs="[" + ",".join(r.inputs for r in part) + "]",
        outputs="[" + ",".join(r.outputs for r in part) + "]").returning(chunks.c.id)
    ).scalar_one()
    bind.execute(sa.insert(ids), [{"request_id": r.request_id, "chunk": chunk, "position": i}
                                  for i, r in enumerate(part)])


def downgrade() -> None:
    op.create_table('prediction_log',
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('arm', sa.String(length=16), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('inputs', sa.Text(), nullable=False),
    sa.Column('outputs', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_prediction_log'))
    )
    op.create_index('ix_prediction_log_at', 'prediction_log', ['at'], unique=False)
    op.create_index('ix_prediction_log_model_version_at', 'prediction_log',
                    ['model', 'version', 'at'], unique=False)
    bind = op.get_bind()
    for row in bind.execute(sa.select(ids.c.request_id, ids.c.position, chunks)
                            .join(chunks, chunks.c.id == ids.c.chunk)
                            .order_by(chunks.c.id)):
        entries = orjson.loads(row.entries)
        inputs = orjson.loads(row.inputs)[row.position]
        kinds = [int(k) for k in entries["tabular"]]
        if kinds[row.position] == 2:  # float64 rows in the chunk's binary table
            width = len(orjson.loads(row.columns))
            before = sum(r for r, k in zip(entries["rows"][:row.position],
                                           kinds[:row.position], strict=True) if k == 2)
            table = np.frombuffer(row.table, dtype="<f8").reshape(-1, width)
            inputs = [[None if math.isnan(v) else v for v in r] for r in
                      table[before:before + entries["rows"][row.position]].tolist()]
        if kinds[row.position]:
            inputs = {"columns": orjson.loads(row.columns), "data": inputs}
        bind.execute(sa.insert(old_log).values(
            request_id=row.request_id, model=row.model, version=row.version,
            arm=entries["arms"][row.position],
            at=dt.datetime.fromtimestamp(entries["at"][row.position], dt.timezone.utc),
            rows=entries["rows"][row.position], inputs=orjson.dumps(inputs).decode(),
            outputs=orjson.dumps(orjson.loads(row.outputs)[row.position]).decode()))
    op.drop_table('prediction_ids')
    op.drop_index('ix_prediction_chunks_model_version_last_at', table_name='prediction_chunks')
    op.drop_index('ix_prediction_chunks_last_at', table_name='prediction_chunks')
    op.drop_table('prediction_chunks')
