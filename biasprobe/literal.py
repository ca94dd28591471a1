"""The one rule for a value typed as text (``--arch-kw``, ``--task-param``, ``NAME[key=value]``, a task's
parameters): a Python literal when it parses as one, else the text itself."""

from __future__ import annotations

import ast


def parse_literal(value):
    """``'4'`` -> 4, ``'[2, 2]'`` -> [2, 2], ``'True'`` -> True, ``'(3, 3)'`` -> (3, 3); text that is no literal
    (``'bilinear'``) stays text, and a value that is not text is returned unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
