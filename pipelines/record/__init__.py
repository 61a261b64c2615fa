"""What a run leaves behind for people and machines to read.

`audit` writes the run and its per-table figures into Atlas DB; `changelog` keeps the log
of replica keys each load changed (read by the incremental facts); `status` reads the audit
back for `status` and the HTTP service; `metrics` turns it into Prometheus metrics (textfile
and ``/metrics``).
"""
