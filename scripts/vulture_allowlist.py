"""Names vulture cannot see used: each is called or read by a framework, never by our code.

Typer commands, FastAPI routes, pytest hooks and SQLAlchemy event listeners are matched by
their decorators instead (``ignore_decorators`` in pyproject.toml). Anything else vulture
reports is dead: remove it rather than list it here.
"""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# pytest: module-level marks, a fixture requested through @pytest.mark.usefixtures, and the
# node id that conftest.py's pytest_collection_modifyitems rewrites (pytest 8 and 9 spellings)
_.pytestmark
_.clean_env
# autouse: pytest runs it for every test, nothing requests it (tests/conftest.py)
_._connections_returned
_._nodeid
_._id

# properties whose setter is the use: DB-API connections' autocommit, Selenium's browser path
_.autocommit
_.binary_location

# pydantic reads a model's configuration from this class attribute (pipelines/serve/routes.py)
_.model_config

# choices of `--trigger` (pipelines/run.py): typer matches the command line's value to a member
_.cron
_.manual

# attributes read by the health page's Jinja template (pipelines/serve/templates/health.html.j2)
_.y
_.colour
_.baseline

# run in a child process by its `python -c` command (pipelines/demo/kimai_data.py)
_._chunk_writer_main

# bench samples: written to the JSON report with asdict, read back by key (benchlib/report.py)
_.rss_peak_at
_.kimai_rows_sent
_.others_cpu
_.product_bytes
_.product_ts_bytes
