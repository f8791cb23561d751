"""routing revision

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 15:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('routing_revision',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('revision', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_revision'))
    )
    op.bulk_insert(table, [{'id': 1, 'revision': 1}])


def downgrade() -> None:
    op.drop_table('routing_revision')
