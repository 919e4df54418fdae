"""The HTTP API: ``create_app(settings)`` builds the FastAPI app; routers live in ``routes/``."""
