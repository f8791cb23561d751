"""reference profiles and live profile windows

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reference_profiles',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=16), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('profile', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'],
                            name=op.f('fk_reference_profiles_version_id_model_versions'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id', name=op.f('pk_reference_profiles'))
    )
    op.create_table('profile_windows',
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('width_s', sa.Integer(), nullable=False),
    sa.Column('start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('worker', sa.String(length=32), nullable=False),
    sa.Column('digest', sa.String(length=16), nullable=False),
    sa.Column('counts', sa.LargeBinary(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model', 'version', 'width_s', 'start', 'worker', 'digest',
                            name=op.f('pk_profile_windows'))
    )
    op.create_index('ix_profile_windows_lookup', 'profile_windows',
                    ['model', 'version', 'width_s', 'start'], unique=False)
    op.create_index('ix_profile_windows_start', 'profile_windows', ['start'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_profile_windows_start', table_name='profile_windows')
    op.drop_index('ix_profile_windows_lookup', table_name='profile_windows')
    op.drop_table('profile_windows')
    op.drop_table('reference_profiles')
