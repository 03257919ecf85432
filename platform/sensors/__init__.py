"""Sensors: the raw-upload sensor."""

from .raw_uploads import build_raw_uploads_sensor

__all__ = ["build_raw_uploads_sensor"]
