"""twoway-callback: two-way callbacks through Asterisk ARI, driven by a Postgres table."""

__version__ = "0.1.0"
