# alembic env
