"""Read leak files as they come: containers, encodings and formats, streamed in flat memory.

``stream`` opens a file (plain, gzip, bz2, xz), finds its encoding and format, and yields
records, whole or by byte range; ``formats`` turns lines into records per format;
``encoding`` knows byte-order marks. Nothing here canonicalizes an address.
"""

from jobs.reader.stream import LeakFileError, LeakFormat, LeakReader, LeakSource, open_leak

__all__ = ["LeakFileError", "LeakFormat", "LeakReader", "LeakSource", "open_leak"]
