"""Kimai → Atlas DB replica, reconciliation and dbt transform runner."""

import os

# pyarrow's allocator (mimalloc) keeps freed pages for a while before returning them to the
# OS; batches are freed one after another here, so returning them at once keeps the peak
# RSS ~30-40 MiB lower at no measured cost in time. It must be set before pyarrow loads.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
