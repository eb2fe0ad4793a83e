"""Prompts as A1111 means them: syntax (emphasis, scheduling, network tags), styles, chunking and encoding."""
