"""deployments and their events

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 22:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deployments',
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('strategy', sa.String(length=16), nullable=True),
    sa.Column('rollout_id', sa.String(length=32), nullable=True),
    sa.Column('candidate', sa.String(length=64), nullable=True),
    sa.Column('candidate_weight', sa.Float(), nullable=False),
    sa.Column('shadow_fraction', sa.Float(), nullable=True),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('analysis', sa.JSON(), nullable=False),
    sa.Column('previous', sa.String(length=64), nullable=True),
    sa.Column('keep_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('step_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('model', name=op.f('pk_deployments'))
    )
    op.create_table('deployment_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('rollout_id', sa.String(length=32), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('from_version', sa.String(length=64), nullable=True),
    sa.Column('to_version', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('numbers', sa.JSON(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_events'))
    )
    op.create_index('ix_deployment_events_model_id', 'deployment_events', ['model', 'id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_deployment_events_model_id', table_name='deployment_events')
    op.drop_table('deployment_events')
    op.drop_table('deployments')
