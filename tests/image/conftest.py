from image_helpers import build  # noqa: F401  (fixture)
