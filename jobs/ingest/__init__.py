"""Ingest a leak file: in one process (``pipeline``) or cut into parts for rq workers
(``parts``), one run at a time per file or part (``lock``).
"""
