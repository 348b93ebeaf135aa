"""What operators and their tools call and run: health probes, Prometheus metrics, request
ids, the request head's limits and the gunicorn worker that serves the app."""
