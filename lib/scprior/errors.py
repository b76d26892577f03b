"""Errors raised for bad user input.

Every check in scprior raises :class:`ScpriorInputError` with a message that says what is wrong
and what to do, so a user never has to read a traceback from deep inside a model.
"""

from __future__ import annotations


class ScpriorInputError(ValueError):
    """Bad input (data, gene identifiers, embeddings, parameters); the message says what to do."""
