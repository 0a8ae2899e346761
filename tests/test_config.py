"""Tests of buildbot_rest.config: defaults, the TOML file and command-line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildbot_rest.config import Config, ConfigError, derive_base_url


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = Config()
    assert config.db_url == "sqlite:///state.sqlite"
    assert config.port == "tcp:8010:interface=127.0.0.1"
    assert config.base_url == "http://localhost:8010/"
    assert config.base_url_derived
    assert config.pool_size == 4
    assert config.demo is False
    assert config.create is False
    assert config.forceschedulers == []
    assert config.access_log == "-"
    assert (config.ping_interval, config.resume_window, config.live_buffer) == (
        30.0, 10000, 4 << 20)
    assert (config.title, config.title_url, config.ui, config.ui_default_config) == (
        "Buildbot", "http://buildbot.net/", True, {})


@pytest.mark.parametrize("port, url", [
    ("tcp:8010:interface=127.0.0.1", "http://localhost:8010/"),
    ("tcp:port=9000", "http://localhost:9000/"),
    ("tcp:interface=::1:port=9001", "http://localhost:9001/"),
    ("tcp:80", "http://localhost/"),
    ("ssl:8443:privateKey=k.pem", "https://localhost:8443/"),
    ("unix:/tmp/sock", "http://localhost:8010/"),
    (None, "http://localhost:8010/"),
])
def test_derived_base_url(port: str | None, url: str) -> None:
    assert derive_base_url(port) == url


def test_toml_file(tmp_path: Path) -> None:
    path = write(tmp_path, '''
db_url = "postgresql://bb@db/bb"
port = "tcp:9000"
pool_size = 8
demo = true
create = true

[[forceschedulers]]
name = "force"
builder_names = ["linux", "mac"]
''')
    config = Config.from_toml(path)
    assert config.db_url == "postgresql://bb@db/bb"
    assert config.base_url == "http://localhost:9000/"
    assert config.pool_size == 8
    assert config.demo is True
    assert config.create is True
    # a table without all_fields is declared: upstream's default fields
    # (tests/test_config_forceschedulers.py checks them against upstream's own)
    [entry] = config.forceschedulers
    fields = entry.pop("all_fields")
    assert entry == {
        "name": "force", "button_name": "force", "label": "force",
        "builder_names": ["linux", "mac"], "enabled": True,
    }
    assert [f["fullName"] for f in fields[0]["fields"] + fields[1]["fields"]] == [
        "username", "reason", "priority", "branch", "project", "repository", "revision"]


def test_overrides_win_and_none_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = "tcp:9000"\npool_size = 2\n')
    config = Config.from_toml(path, port="tcp:9100", pool_size=None, db_url=None)
    assert config.port == "tcp:9100"
    assert config.base_url == "http://localhost:9100/"  # derived again
    assert config.pool_size == 2
    assert config.db_url == "sqlite:///state.sqlite"


def test_given_base_url_is_kept(tmp_path: Path) -> None:
    config = Config(base_url="https://ci.example.org/bb").merged(port="tcp:9000")
    assert config.base_url == "https://ci.example.org/bb/"
    assert not config.base_url_derived


def test_empty_port_means_no_listening() -> None:
    assert Config(port="").port is None


@pytest.mark.parametrize("text, message", [
    ('prot = "tcp:1"\n', "unknown key 'prot'"),
    ('pool_size = "4"\n', "'pool_size' must be an integer, not string"),
    ("pool_size = true\n", "'pool_size' must be an integer, not boolean"),
    ("pool_size = 0\n", "'pool_size' must be at least 1"),
    ('demo = "yes"\n', "'demo' must be a boolean, not string"),
    ('create = "yes"\n', "'create' must be a boolean, not string"),
    ("port = 8010\n", "'port' must be a string, not integer"),
    ('port = "8010"\n', "'port' must be a Twisted endpoint, not a bare number: did you mean "
                        '"tcp:8010"?'),
    ("access_log = false\n", "'access_log' must be a string, not boolean"),
    ('access_log = ""\n', "'access_log' must be \"-\", \"off\" or a file path"),
    ('base_url = "localhost:8010"\n', "'base_url' must be an http:// or https:// URL"),
    ('forceschedulers = ["x"]\n', "forceschedulers[0] must be a table"),
    ('[[forceschedulers]]\nname = "f"\nbuilders = []\n',
     "unknown key forceschedulers[0].builders"),
    ('[[forceschedulers]]\nname = "f"\nenabled = 1\n',
     "forceschedulers[0].enabled must be boolean, not integer"),
    ('[[forceschedulers]]\nlabel = "f"\n', "forceschedulers[0].name is required"),
    ("db_url = \n", "invalid TOML"),
    ("ping_interval = -1\n", "'ping_interval' must be a finite number of seconds of at "
                             "least 0 (0: no pings), not -1"),
    ("ping_interval = inf\n", "'ping_interval' must be a finite number"),
    ('ping_interval = "30"\n', "'ping_interval' must be a number of seconds, not string"),
    ("resume_window = -1\n", "'resume_window' must be at least 0, not -1"),
    ("resume_window = 1.5\n", "'resume_window' must be an integer, not float"),
    ("live_buffer = 100\n", "'live_buffer' must be at least 1024 bytes, not 100"),
    ("live_buffer = -5\n", "'live_buffer' must be at least 0, not -5"),
    ("title = 1\n", "'title' must be a string, not integer"),
    ('ui = "no"\n', "'ui' must be a boolean, not string"),
    ('ui_default_config = "x"\n', "'ui_default_config' must be a table, not string"),
    ('[ui_default_config]\n"x</script>" = 1\n', "ui_default_config: 'x</script>' is not a "
                                                 'setting name of the form "Group.name"'),
    ('[ui_default_config]\n"Builders.x" = [1]\n',
     "ui_default_config.Builders.x must be a string, a finite number or a boolean, not "
     "array"),
    ('[ui_default_config]\n"Builders.x" = 2026-11-30\n',
     "ui_default_config.Builders.x must be a string, a finite number or a boolean, not "
     "date"),
    ('[ui_default_config]\n"Builders.x" = inf\n',
     "ui_default_config.Builders.x must be a string, a finite number or a boolean"),
    ('[ui_default_config]\nBuilders.buildFetchLimit = 500\n',
     'ui_default_config.Builders must be a string, a finite number or a boolean, not a '
     'table (quote a dotted name: "Builders.buildFetchLimit" = 500)'),
])
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Config.from_toml(path)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read configuration file .*missing\.toml"):
        Config.from_toml(tmp_path / "missing.toml")


def test_unknown_override() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        Config().merged(colour="blue")


def test_log_compression_method() -> None:
    assert Config().log_compression_method == "zstd"
    assert Config(log_compression_method="br").log_compression_method == "br"
    with pytest.raises(ConfigError, match="'log_compression_method' must be one of raw, gz"):
        Config(log_compression_method="xz")


def test_log_compression_methods_are_the_writable_codecs() -> None:
    from buildbot_rest.config import LOG_COMPRESSION_METHODS
    from buildbot_rest.db.logchunks_write import COMPRESSION_METHODS
    assert tuple(COMPRESSION_METHODS) == LOG_COMPRESSION_METHODS
