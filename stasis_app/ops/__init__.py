"""Operator commands: ``doctor`` for a site, and the queue commands over the service's store.

They sit beside ``cli`` at the top: they use the store, the ARI client and the API's validation,
and nothing below imports them.
"""
