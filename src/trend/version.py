"""The release, in a module of its own: the API reports it without importing the package's facade."""

__version__ = "0.1.0"
