"""Postgres side: connection, migrations, the request queue and its watcher."""
