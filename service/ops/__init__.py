"""What operators and their tools call: health probes and Prometheus metrics."""
