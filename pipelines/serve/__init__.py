"""The HTTP service (``python -m pipelines.run serve``): start runs, read their audit and health.

The modules, from the outside in:

* `server`: the ``serve`` command's checks before listening, then uvicorn.
* `app`: the FastAPI application: middleware, error answers, shutdown.
* `tokens`: the hashed tokens file (also used by ``token create``).
* `worker`: runs started over HTTP, one at a time, on a thread of their own.
* `health_page`: the HTML health page.

Nothing is imported here: the command line imports this package for its option defaults
and must not load FastAPI to print its help.
"""
