"""shadow windows

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shadow_windows',
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('stable', sa.String(length=64), nullable=False),
    sa.Column('shadow', sa.String(length=64), nullable=False),
    sa.Column('start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('worker', sa.String(length=32), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('agreed', sa.Integer(), nullable=False),
    sa.Column('numeric_rows', sa.Integer(), nullable=False),
    sa.Column('abs_diff_sum', sa.Float(), nullable=False),
    sa.Column('latency_sum', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model', 'stable', 'shadow', 'start', 'worker',
                            name=op.f('pk_shadow_windows'))
    )


def downgrade() -> None:
    op.drop_table('shadow_windows')
