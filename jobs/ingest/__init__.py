"""Ingest a leak file: in one process (``pipeline``) or cut into parts for rq workers
(``parts``), one run at a time per file or part (``lock``).
"""

# The most parts a file is cut into (``leakguard ingest --parts``). Here rather than in
# ``parts``, so that the command's options do not import rq and redis for a
# one-process ingest.
MAX_PARTS = 1024
