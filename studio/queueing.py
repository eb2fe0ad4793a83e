"""The fair queue moved to studio.dispatch, next to the decisions made on it; this name stays for old imports."""

from .dispatch import FairQueue

__all__ = ["FairQueue"]
