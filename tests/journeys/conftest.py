from __future__ import annotations

import pytest

from .demo import make_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    d = make_demo(tmp_path_factory.mktemp("journeys-demo") / "demo")
    try:
        yield d
    finally:
        d.store.close()
