"""`seqmnist serve`: a web page and a JSON API over trained runs (FastAPI on uvicorn).

``create_app`` builds the ASGI application for a list of runs, so it can be
served by ``seqmnist serve`` or mounted in a user's own application.
"""

from seqmnist.use.serve.app import create_app

__all__ = ["create_app"]
