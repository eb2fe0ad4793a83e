"""sd-studio: a browser-based Stable Diffusion studio that shows the diffusion process as it happens."""

__version__ = "0.1.0"
