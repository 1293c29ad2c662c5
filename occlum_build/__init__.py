"""occlum-build: the Occlum tool chain as a content-hashed, reproducible build graph."""

__version__ = "0.1.0"
