"""Locates the non-package folders (rtl_templates/, sim/, flows/) in a checkout or an installed wheel.

In the wheel they are force-included under ``hwgen/_data/``; in a source checkout they sit beside ``hwgen/``.
"""
from __future__ import annotations

from pathlib import Path

FOLDERS = ("rtl_templates", "sim", "flows")


def data_dir(folder: str) -> Path:
    """Path of one shipped folder, ``folder`` in :data:`FOLDERS`."""
    if folder not in FOLDERS:
        raise ValueError(f"unknown data folder {folder!r}; expected one of {', '.join(FOLDERS)}")
    package = Path(__file__).resolve().parent
    for candidate in (package / "_data" / folder, package.parent / folder):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"hwgen data folder '{folder}' is missing from the installation ({package})")


def template(name: str) -> Path:
    """Path of one template file in ``rtl_templates/``."""
    path = data_dir("rtl_templates") / name
    if not path.is_file():
        raise FileNotFoundError(f"no template named '{name}' in {path.parent}")
    return path
