"""The base of every error Citeline raises on purpose.

Each one's message says what is wrong and what to do. The HTTP layer maps them to statuses in one table
(`service/api/errors.py`), the command line prints them on one line; anything else is a bug.
"""

from __future__ import annotations


class CitelineError(Exception):
    """An expected failure with a message meant for the person or program that caused or can fix it."""
