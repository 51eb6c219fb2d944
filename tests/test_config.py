"""Config loading: a valid project loads; every mistake is named by key."""

from __future__ import annotations

import pytest

from panorama.config import ConfigError, init_project, load_project


def _write(tmp_path, text):
    (tmp_path / "panorama.yaml").write_text(text)
    return tmp_path


def test_init_writes_a_config_that_loads(tmp_path):
    init_project(tmp_path / "acme", region="GB")
    project = load_project(tmp_path / "acme")
    assert project.config.name == "acme"
    assert project.config.identity.default_region == "GB"
    assert project.store_path == (tmp_path / "acme" / "panorama.duckdb").resolve()
    with pytest.raises(ConfigError, match="already exists"):
        init_project(tmp_path / "acme")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\nsources:\n  crm: {path: c.csv, kind: record, key: id, timestamp: t}\n",
         "panorama.yaml: sources.crm.kind: Input should be 'records', 'events' or 'segment' (got 'record')"),
        ("name: a\nsourcs: {}\n", "panorama.yaml: sourcs: unknown key"),
        ("sources: {}\n", "panorama.yaml: name: required key is missing"),
        ("name: a\nsources:\n  crm: {path: c.csv, kind: records, timestamp: t}\n",
         "panorama.yaml: sources.crm: `key` is required for a records source"),
        ("name: a\nsources:\n  shop: {path: s.csv, kind: events, key: id, timestamp: t}\n",
         "panorama.yaml: sources.shop: an events source needs exactly one of `event` or `event_column`"),
        ("name: a\nsources:\n  x: {path: s.xlsx, kind: segment}\n",
         "panorama.yaml: sources.x: path 's.xlsx': unsupported file type"),
        ("name: a\nidentity: {default_region: XX}\n",
         "panorama.yaml: identity.default_region: unknown region 'XX'"),
        ("name: a\nsources:\n  crm: {path: c.csv, kind: records, key: id, timestamp: t, formats: {dob: '%d'}}\n",
         "panorama.yaml: sources.crm: formats: column(s) ['dob'] are not the timestamp, an attribute or a property"),
        ("name: a\nsources: [\n", "panorama.yaml: line 3, column 1: invalid YAML"),
        ("- just a list\n", "panorama.yaml: the file must be a mapping"),
        ("name: a\nserver: {memory_limit: 4 apples}\n",
         "panorama.yaml: server.memory_limit: String should match pattern"),
    ],
)  # fmt: skip
def test_errors_name_the_key_and_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError) as excinfo:
        load_project(_write(tmp_path, text))
    assert message in str(excinfo.value)


def test_missing_config_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="panorama init"):
        load_project(tmp_path)
