"""Panorama geometry, views and text processing. A leaf: no model imports."""
