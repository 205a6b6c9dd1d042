"""One error type the CLI turns into one clear line and a non-zero exit."""
from __future__ import annotations


class PlaygroundError(Exception):
    """A user-facing failure: the message names what is wrong and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
