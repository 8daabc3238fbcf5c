"""The service's own HTTP server: health, metrics, and (later) the JSON and XML-RPC API."""
