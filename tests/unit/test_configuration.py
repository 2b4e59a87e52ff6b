"""The settings loader: every field of the `Settings` tree is reachable from the TOML file
and the environment (the tests walk the tree, so new fields are covered without edits),
precedence is default < file < env < flag, bad values name the setting, secrets are
masked, and docs/configuration.md is what the settings say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_origin

import pytest

from clusterplane import configuration
from clusterplane.cli.config import render_docs, render_show
from clusterplane.configuration import ConfigError, Leaf

DOCS = Path(__file__).resolve().parents[2] / "docs/configuration.md"


def sample(leaf: Leaf) -> Any:
    """A value of the leaf's type, inside its bounds, unlike its default."""
    default = configuration.default_of(leaf)
    meta = leaf.field.metadata
    base = leaf.base
    if "example" in meta:
        return meta["example"]
    if "choices" in meta:
        return next(c for c in meta["choices"] if c != default)
    if base is bool:
        return not default
    if base in (int, float):
        low = meta.get("min", meta.get("gt", 0))
        high = meta.get("max", (default or 0) + 100)
        step = 1 if base is int else 0.25
        value = default + step if default + step <= high else max(low, default - step)
        if "gt" in meta and value <= meta["gt"]:
            value = default + step
        assert value != default and low <= value <= high, leaf.path
        return base(value)
    if meta.get("file"):
        return Path(__file__)
    if base is Path:
        return Path(f"{leaf.name}-sample.yaml")
    if meta.get("networks"):
        return ("10.20.0.0/16", "fd00::/8")
    if get_origin(base) is tuple:
        return (f"{leaf.name}-one-0123456789-abcdefghij", f"{leaf.name}-two-0123456789-abcdef")
    return f"{leaf.name}-sample-0123456789-abcdefghij"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(str(value))


def env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def every_setting_as_toml() -> str:
    lines: list[str] = []
    for prefix, cls in configuration.sections():
        if prefix:
            lines.append(f"[{prefix.rstrip('.')}]")
        for leaf in configuration.leaves(cls, prefix):
            if leaf.path.count(".") == prefix.count("."):
                lines.append(f"{leaf.name} = {toml_value(sample(leaf))}")
    return "\n".join(lines) + "\n"


def test_every_setting_can_be_set_from_the_file(tmp_path: Path):
    file = tmp_path / "clusterplane.toml"
    file.write_text(every_setting_as_toml())
    loaded = configuration.load(file, {}, {})
    for leaf in configuration.leaves():
        assert configuration.value_at(loaded.settings, leaf.path) == sample(leaf), leaf.path
        assert loaded.sources[leaf.path] == "file"


def test_every_setting_can_be_set_from_the_environment():
    environ = {leaf.env_name: env_text(sample(leaf)) for leaf in configuration.leaves()}
    loaded = configuration.load(None, environ, {})
    for leaf in configuration.leaves():
        assert configuration.value_at(loaded.settings, leaf.path) == sample(leaf), leaf.path
        assert loaded.sources[leaf.path] == "env"


def test_every_setting_has_a_type_the_loader_reads():
    readable = {str, int, float, bool, Path, tuple[str, ...]}
    for leaf in configuration.leaves():
        assert leaf.base in readable, f"{leaf.path}: teach configuration.py {leaf.base}"


def test_variable_names_follow_the_tree_and_the_older_names_still_work():
    names = {leaf.path: leaf.env_name for leaf in configuration.leaves()}
    assert names["server.read_cache_seconds"] == "CLUSTERPLANE_SERVER__READ_CACHE_SECONDS"
    assert names["admin_api_key"] == "CLUSTERPLANE_ADMIN_API_KEY"
    assert names["credentials.key"] == "CLUSTERPLANE_CREDENTIALS_KEY"
    assert names["credentials.previous_keys"] == "CLUSTERPLANE_PREVIOUS_CREDENTIALS_KEYS"
    assert len(set(names.values())) == len(names)


def test_a_flag_beats_the_environment_which_beats_the_file(tmp_path: Path):
    file = tmp_path / "c.toml"
    file.write_text("[server]\nport = 9001\nhost = '0.0.0.0'\nread_cache_seconds = 0.5\n")
    environ = {"CLUSTERPLANE_SERVER__PORT": "9002", "CLUSTERPLANE_SERVER__HOST": "::1"}
    loaded = configuration.load(file, environ, {"server.port": "9003"})
    server = loaded.settings.server
    assert (server.port, server.host, server.read_cache_seconds) == (9003, "::1", 0.5)
    assert loaded.sources["server.port"] == "flag"
    assert loaded.sources["server.host"] == "env"
    assert loaded.sources["server.read_cache_seconds"] == "file"
    assert loaded.sources["server.send_timeout_seconds"] == "default"


@pytest.mark.parametrize(
    ("toml", "path", "reason"),
    [
        ('[server]\nport = "eighty"\n', "server.port", "is not an integer"),
        ("[server]\nport = 70000\n", "server.port", "must be at most 65535"),
        ("[health]\nmax_unhealthy_share = 1.5\n", "health.max_unhealthy_share", "at most 1"),
        ("[simulation]\ntime_scale = 0\n", "simulation.time_scale", "greater than 0"),
        ("[engine]\nbatch_size = 2.5\n", "engine.batch_size", "is not an integer"),
        ("[placement]\nallow_cross_fabric = 1\n", "placement.allow_cross_fabric", "true or"),
        ('[log]\nformat = "xml"\n', "log.format", "must be one of text, json"),
        ('[metrics]\ntoken = "too-short"\n', "metrics.token", "at least 24 characters"),
        ("[server]\nportt = 1\n", "server.portt", "did you mean server.port?"),
        ("[nonsense]\nx = 1\n", "nonsense", "unknown setting"),
        ("server = 3\n", "server", "must be a table"),
        ("[server\n", "c.toml", "not valid TOML"),
        (
            '[webhooks]\nallowed_networks = ["10.0.0.0/33"]\n',
            "webhooks.allowed_networks",
            "'10.0.0.0/33' is not a CIDR network",
        ),
        (
            "[storage]\nmin_volume_tib = 10\nmax_volume_tib = 5\n",
            "storage.min_volume_tib",
            "10 is more than storage.max_volume_tib (5, file)",
        ),
        (
            '[storage]\nshared_directories = ["agents-1=/srv", "agents-2:/srv"]\n',
            "storage.shared_directories",
            "'agents-2:/srv' is not of the form REGION=/ABSOLUTE/PATH",
        ),
    ],
)
def test_a_bad_value_in_the_file_names_the_setting_and_the_reason(
    tmp_path: Path, toml: str, path: str, reason: str
):
    file = tmp_path / "c.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        configuration.load(file, {}, {})
    assert caught.value.path.endswith(path)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "name", "reason"),
    [
        ({"CLUSTERPLANE_SERVER__PORT": "-1"}, "CLUSTERPLANE_SERVER__PORT", "at least 1"),
        ({"CLUSTERPLANE_ENGINE__LEASE_SECONDS": "nan"}, "LEASE_SECONDS", "finite"),
        ({"CLUSTERPLANE_SERVR__PORT": "1"}, "CLUSTERPLANE_SERVR__PORT", "no such setting"),
        ({"CLUSTERPLANE_RUN_CONTROLLERS": "maybe"}, "RUN_CONTROLLERS", "not true or false"),
    ],
)
def test_a_bad_variable_names_itself_and_the_reason(
    environ: dict[str, str], name: str, reason: str
):
    with pytest.raises(ConfigError) as caught:
        configuration.load(None, environ, {})
    assert caught.value.path.endswith(name)
    assert reason in str(caught.value) and "from the environment" in str(caught.value)


def test_a_bad_secret_is_reported_without_its_value(tmp_path: Path):
    file = tmp_path / "c.toml"
    file.write_text("admin_api_key = 12345678901234567890\n")
    with pytest.raises(ConfigError) as caught:
        configuration.load(file, {}, {})
    assert "12345678901234567890" not in str(caught.value)
    assert caught.value.path == "admin_api_key"


def test_other_tools_variables_are_left_alone():
    loaded = configuration.load(None, {"CLUSTERPLANE_TEST_DATABASE": "postgresql"}, {})
    assert set(loaded.sources.values()) == {"default"}


def test_show_masks_secrets_and_database_passwords():
    environ = {
        "CLUSTERPLANE_ADMIN_API_KEY": "operator-chosen-admin-key-0123456789",
        "CLUSTERPLANE_CREDENTIALS_KEY": "sealing-key-0123456789-0123456789-abc",
        "CLUSTERPLANE_DATABASE_URL": "postgresql+psycopg://cp:hunter2secret@db/cp",
    }
    text = render_show(configuration.load(None, environ, {}))
    for secret in ("operator-chosen-admin-key", "sealing-key", "hunter2secret"):
        assert secret not in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()}
    assert rows["admin_api_key"] == ["********", "env"]
    assert rows["database_url"] == ['"postgresql+psycopg://cp:********@db/cp"', "env"]
    assert rows["server.port"] == ["8080", "default"]


def test_every_setting_is_documented_and_the_docs_file_is_fresh():
    for prefix, cls in configuration.sections():
        docs = configuration.field_docs(cls)
        for leaf in configuration.leaves(cls, prefix):
            if leaf.path.count(".") == prefix.count("."):
                assert docs.get(leaf.name), f"{leaf.path} has no comment in settings.py"
    assert DOCS.read_text() == render_docs(), (
        "docs/configuration.md is stale: run `make docs` (clusterplane config docs)"
    )
