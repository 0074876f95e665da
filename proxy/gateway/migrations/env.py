"""Alembic's environment for the gateway Store.

Run only through :meth:`proxy.gateway.store.SqlStore.start`, which builds Alembic's Config in code and
hands over its own connection (already inside a transaction holding the migration lock) as
``config.attributes["connection"]``; there is no alembic.ini. Logging is left to the application, so
this file does not call ``fileConfig``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError(
        "the gateway migrations run from SqlStore.start() (switchboard serve applies them at start-up); "
        "there is no alembic.ini for the alembic command line"
    )

# No target_metadata: revisions are written by hand, so they stay a frozen history of the schema.
context.configure(connection=_connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
