"""Shared fixtures: one warm tiny-model engine per test session (building it costs seconds), offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from studio.config import Settings


@pytest.fixture(scope="session")
def studio_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("studio-cache")


@pytest.fixture(scope="session")
def tiny_settings(tmp_path_factory, studio_cache):
    return Settings(model="tiny", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False)


@pytest.fixture(scope="session")
def engine(tiny_settings):
    from studio.engine import Engine
    from studio.outputs import OutputStore

    engine = Engine(tiny_settings, OutputStore(tiny_settings.outputs)).start()
    yield engine
    engine.stop()
