"""The HTTP API: ``create_app(settings)`` builds the FastAPI app; routers live in ``routes/``."""

from trend.extras import server_part_missing

try:
    import fastapi  # noqa: F401  # the server extra is installed
except ModuleNotFoundError as error:
    server_part_missing("trend.api", error)
