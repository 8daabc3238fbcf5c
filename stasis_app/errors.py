"""One exception root for the package, so callers can catch everything of ours at once."""


class TwowayError(Exception):
    """Root of every exception this package raises on purpose."""


class ConfigError(TwowayError):
    """A setting is missing or inconsistent."""


class SchemaError(TwowayError):
    """The database is not migrated (or migrated by a newer version)."""


class EmbeddedPostgresUnavailable(TwowayError):
    """No database URL was given and the embedded Postgres extra is not installed."""
