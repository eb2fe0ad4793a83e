"""Shared fixtures, offline: a tiny-model engine of its own for each test module (about 0.2 s to start once the
session's model files exist), so no module depends on what another did to an engine or its outputs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from studio.config import Settings


@pytest.fixture(scope="session")
def studio_cache(tmp_path_factory):
    """The studio's cache (configs, tokenizer files): written once, read by every engine."""
    return tmp_path_factory.mktemp("studio-cache")


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache):
    return Settings(model="tiny", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False)


@pytest.fixture(scope="module")
def engine(tiny_settings):
    from studio.engine import Engine
    from studio.outputs import OutputStore

    engine = Engine(tiny_settings, OutputStore(tiny_settings.outputs)).start()
    yield engine
    engine.stop()
