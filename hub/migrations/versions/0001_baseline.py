"""Baseline: every table of hub.storage.schema as of the first release.

Until the first release the baseline follows the schema module; from then on
every change gets its own revision with explicit operations.

Revision ID: 0001
Revises:
"""

from alembic import op

from hub.storage.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
