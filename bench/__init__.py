"""Benchmark harness: the studio engine vs diffusers' own pipeline (`python -m bench --help`). Imports no gradio."""
