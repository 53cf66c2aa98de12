"""The ASGI application: the page, /api/predict, /api/runs and /healthz.

Every answer that is not a success is JSON ``{"detail": "..."}`` with the
status saying what kind of problem it is; nothing of a traceback ever
reaches a client (the server's log keeps it).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from seqmnist.errors import ImageError
from seqmnist.use.serve import schemas
from seqmnist.use.serve.batcher import Batcher, Busy
from seqmnist.use.serve.decode import image_error, read_source
from seqmnist.use.serve.encode import prediction_json
from seqmnist.use.serve.limits import BodyLimit
from seqmnist.use.serve.served import RunDirs, ServedRun, load_served_runs
from seqmnist.version import package_version

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# Far above any photo of a digit a phone takes, far below what would strain memory.
MAX_BODY_BYTES = 10 * 1024 * 1024
ERRORS = {status: {"model": schemas.Error} for status in (400, 404, 413, 415, 422, 503)}
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "pixels": {
                            "type": "array",
                            "items": {"type": "array", "items": {"type": "number"}},
                            "description": "an image already prepared: rows of values in [0, 1]",
                        }
                    },
                    "required": ["pixels"],
                }
            },
        },
    }
}


def create_app(
    run_dirs: RunDirs, *, max_body_bytes: int = MAX_BODY_BYTES, max_batch: int = 64
) -> FastAPI:
    """The application serving ``run_dirs`` (paths, or a mapping of names to paths).

    Each run's model answers the requests that wait for it in batches, on a
    thread of its own (batcher.py); ``app.state.close()`` stops those threads,
    for servers that run no lifespan.
    """
    runs = {run.name: run for run in load_served_runs(run_dirs)}
    batchers = {name: Batcher(run.predictor, max_batch) for name, run in runs.items()}

    def close() -> None:
        for batcher in batchers.values():
            batcher.close()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        close()

    app = FastAPI(
        title="seqmnist",
        version=package_version(),
        summary="Recurrent networks reading digits: predictions and their step-by-step reading",
        # Swagger UI and ReDoc load their scripts from a CDN; the schema alone works offline.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runs = runs
    app.state.close = close  # for servers that run no lifespan
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    _add_error_handlers(app)
    descriptions = {"runs": [run.describe() for run in runs.values()]}
    default_run = next(iter(runs))

    @app.post("/api/predict", responses={200: {"model": schemas.Prediction}, **ERRORS},
              openapi_extra=IMAGE_BODY)  # fmt: skip
    async def predict(
        request: Request,
        run: str | None = Query(None, description="a served run's name (default: the first)"),
        steps: bool = Query(False, description="add the probabilities after each time step"),
    ) -> JSONResponse:
        """Classify one image: a file's bytes, a multipart upload, or prepared pixels as JSON."""
        served = _served(runs, run or default_run)
        source, name = await read_source(request, served.predictor.image_shape)
        try:
            answer = await batchers[served.name].answer(source, name, with_steps=steps)
        except ImageError as error:
            raise image_error(error) from None
        except Busy:
            raise HTTPException(
                503, "the server has too many requests waiting; try again in a moment",
                headers={"Retry-After": "1"},
            ) from None  # fmt: skip
        return JSONResponse(prediction_json(served, answer))

    @app.get("/api/runs", response_model=schemas.Runs)
    async def list_runs() -> JSONResponse:
        """The served runs, with their models and test accuracies."""
        return JSONResponse(descriptions)

    @app.get("/healthz", response_model=schemas.Health)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "runs": len(runs)})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _served(runs: dict[str, ServedRun], name: str) -> ServedRun:
    if name not in runs:
        raise HTTPException(
            404, f"no run named {name!r} is served; GET /api/runs lists them: {', '.join(runs)}"
        )
    return runs[name]


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(error.detail)}, error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or problem['loc'][0]}: "
            f"{problem['msg']}"
            for problem in error.errors()
        )
        return JSONResponse({"detail": problems}, 422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, error: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse(
            {"detail": "the server failed to answer this request; its log says why"}, 500
        )
