"""Tables as files for a user's spreadsheet."""
from __future__ import annotations

import re

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv(table: pd.DataFrame) -> str:
    """The table as CSV, where a text cell that a spreadsheet would run as a formula (starting with = + - @,
    a tab or a carriage return) starts with an apostrophe instead, as OWASP advises: shown, never run."""
    def safe(v):
        return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v

    text = [c for c in table if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]
    return table.assign(**{c: table[c].map(safe) for c in text}).to_csv(index=False)


def file_name(text: str, limit: int = 120) -> str:
    """`text` as a download's file name: letters, digits, dots and dashes kept, anything else one dash."""
    return re.sub(r"[^\w.-]+", "-", str(text)).strip("-.")[:limit] or "export"
