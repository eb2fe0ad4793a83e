"""The demo: a small text-to-image model trained on generated scenes of simple shapes (scenes.py makes them)."""

from ..families import DEMO as NAME  # how users, the command line and the model lists name it
__all__ = ["NAME"]
