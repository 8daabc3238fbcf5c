"""The core every other part adapts to: no I/O imports here (checked by ``make lint``).

``request``: a callback request as the call flow sees it and how an attempt ends;
``rules``: what a dialable value looks like; ``channels`` and ``ari_errors``: what Asterisk
reports about channels and bridges, and how a request to it can fail.
"""
