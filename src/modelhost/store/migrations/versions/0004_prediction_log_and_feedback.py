"""prediction log and feedback

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
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
    op.create_table('feedback',
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_feedback'))
    )
    op.create_index('ix_feedback_model_version', 'feedback', ['model', 'version'],
                    unique=False)
    op.create_index('ix_feedback_received_at', 'feedback', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_feedback_received_at', table_name='feedback')
    op.drop_index('ix_feedback_model_version', table_name='feedback')
    op.drop_table('feedback')
    op.drop_index('ix_prediction_log_model_version_at', table_name='prediction_log')
    op.drop_index('ix_prediction_log_at', table_name='prediction_log')
    op.drop_table('prediction_log')
