"""The SGX structures' field tables use the shared table module (occlum_build/fields.py)."""

from ..fields import Field, Kind, Struct

__all__ = ["Field", "Kind", "Struct"]
