"""The HTTP service (``python -m pipelines.run serve``): start runs, read their audit and health.

The modules, from the outside in:

* `server`: the ``serve`` command's checks before listening, then uvicorn.
* `app`: the FastAPI application: its state, middleware, error answers, shutdown.
* `guard`: every check that needs no body, done before the body is read.
* `auth`: the tokens file as the service reads it, and the scope dependency.
* `tokens`: the hashed tokens file (also used by ``token create``).
* `routes`: the endpoints, on one APIRouter.
* `worker`: runs started over HTTP, one at a time, on a thread of their own.
* `health_page`: the HTML health page (``templates/health.html.j2``).

Nothing is imported here: the command line imports this package for its option defaults
and must not load FastAPI to print its help.
"""
