"""Jinja2 rendering of the files in ``rtl_templates/`` and ``flows/`` (StrictUndefined: a missing variable is an
error)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from .resources import data_dir


@lru_cache(maxsize=None)
def environment(folder: str = "rtl_templates") -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_dir(folder))),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


def render(name: str, folder: str = "rtl_templates", **context: Any) -> str:
    """Render template ``name`` from ``rtl_templates/`` (or another shipped ``folder``, e.g. ``flows``)."""
    return environment(folder).get_template(name).render(**context)
