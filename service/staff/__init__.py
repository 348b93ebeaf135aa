"""The staff site: support and on-call work a whole incident from one internal page."""
