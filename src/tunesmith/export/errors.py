"""The one error every export step raises: what is wrong with the model or request, and what to do instead."""
from __future__ import annotations


class ExportError(ValueError):
    """The model or run cannot be exported as asked; the message says what is wrong and what to do."""
