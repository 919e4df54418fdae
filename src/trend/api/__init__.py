"""The HTTP API: ``create_app(settings)`` builds the FastAPI app; routers live in ``routes/``."""

from trend.extras import missing_server_part

try:
    import fastapi  # noqa: F401  # the server extra is installed
except ModuleNotFoundError as error:
    message = missing_server_part(error)
    if message is None:
        raise
    raise ImportError(f"trend.api: {message}", name=error.name) from error
