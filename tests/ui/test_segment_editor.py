"""Saving a segment into panorama.yaml: only that entry changes (comments, order and the rest
are kept), the result is validated as the server loads it, and a bad save leaves the file."""

from __future__ import annotations

import pytest

from panorama.config import ConfigError, init_project, load_project
from panorama.segments.editor import save_definition

EXTRA = """
# our segments (kept by the builder)
segments:
  vip: "orders >= 10"   # big spenders
  lapsed:
    where: "days_since(last_order_at) > 90"
    description: No order for three months
    recheck_every: 1h
"""


def test_save_keeps_the_rest_of_the_file(tmp_path):
    init_project(tmp_path, name="edit-test", region="GB")
    path = tmp_path / "panorama.yaml"
    path.write_text(path.read_text() + EXTRA)
    before = path.read_text()
    project = load_project(tmp_path)

    config = save_definition(project, "buyers", "orders >= 1", "Bought once")
    text = path.read_text()
    assert "# our segments (kept by the builder)" in text and "# big spenders" in text
    assert "# Panorama project configuration" in text
    assert text.startswith(before.split("segments:")[0])  # everything before is untouched
    assert config.segments["buyers"].where == "orders >= 1"
    assert config.segments["buyers"].description == "Bought once"
    assert list(config.segments) == ["vip", "lapsed", "buyers"]
    assert load_project(tmp_path).config.model_dump() == config.model_dump()

    # an edit changes only that entry; recheck_every and the comment on vip stay
    config = save_definition(project, "lapsed", "days_since(last_order_at) > 120", "")
    text = path.read_text()
    assert config.segments["lapsed"].where == "days_since(last_order_at) > 120"
    assert config.segments["lapsed"].description is None
    assert config.segments["lapsed"].recheck_every == 3600
    assert 'vip: "orders >= 10"   # big spenders' in text

    # the shorthand stays a shorthand
    save_definition(project, "vip", "orders >= 12")
    assert 'vip: "orders >= 12"   # big spenders' in path.read_text()


def test_a_bad_save_leaves_the_file(tmp_path):
    init_project(tmp_path, name="edit-test", region="GB")
    path = tmp_path / "panorama.yaml"
    before = path.read_text()
    project = load_project(tmp_path)
    with pytest.raises(ConfigError, match="segments"):
        save_definition(project, "Bad Name", "orders >= 1")
    with pytest.raises(ConfigError, match="segments.x.where"):
        save_definition(project, "x", "orders >=")
    assert path.read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
