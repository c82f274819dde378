"""Jinja2 rendering of the files in ``rtl_templates/`` (StrictUndefined: a missing variable is an error)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from .resources import data_dir


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_dir("rtl_templates"))),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


def render(name: str, **context: Any) -> str:
    """Render template ``name`` from ``rtl_templates/`` with ``context``."""
    return environment().get_template(name).render(**context)
