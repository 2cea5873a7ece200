"""Controller settings (controller.config) and the data directory checks (controller.datadir)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from controller import config, datadir
from controller.config import ConfigError, ControllerConfig
from controller.datadir import DataDirError
from controller.state.data import StateData
from controller.store.snapshot_file import encode_backup

FIELDS = list(ControllerConfig.__dataclass_fields__)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FIELDS:
        monkeypatch.delenv(config.ENV_PREFIX + name.upper(), raising=False)


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "controller.toml"
    path.write_text(text)
    return str(path)


# -- precedence --------------------------------------------------------------------------------------

def test_defaults_without_anything() -> None:
    cfg = config.load({}, None)
    assert cfg == ControllerConfig()


def test_toml_file_is_read(tmp_path: Path) -> None:
    path = toml(tmp_path, '[controller]\ndata-dir = "/srv/ctl"\napi = "127.0.0.1:9000"\n'
                          'peers = ["10.0.0.2:8700", "10.0.0.3:8700"]\ncommit_timeout = 5\n')
    cfg = config.load({}, path)
    assert cfg.data_dir == "/srv/ctl"
    assert cfg.api == "127.0.0.1:9000"
    assert cfg.peers == ["10.0.0.2:8700", "10.0.0.3:8700"]
    assert cfg.commit_timeout == 5


def test_toml_without_controller_table(tmp_path: Path) -> None:
    cfg = config.load({}, toml(tmp_path, 'log_level = "DEBUG"\n'))
    assert cfg.log_level == "DEBUG"


def test_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = toml(tmp_path, '[controller]\nlog_level = "DEBUG"\ndata_dir = "/from/toml"\ninsecure_http = false\n')
    monkeypatch.setenv("THECLOUD_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("THECLOUD_PEERS", "10.0.0.2:8700, 10.0.0.3:8700 10.0.0.4:8700")
    monkeypatch.setenv("THECLOUD_INSECURE_HTTP", "yes")
    monkeypatch.setenv("THECLOUD_COMMIT_TIMEOUT", "7.5")
    cfg = config.load({}, path)
    assert cfg.log_level == "WARNING"
    assert cfg.data_dir == "/from/toml"
    assert cfg.peers == ["10.0.0.2:8700", "10.0.0.3:8700", "10.0.0.4:8700"]
    assert cfg.insecure_http is True
    assert cfg.commit_timeout == 7.5


def test_flags_override_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = toml(tmp_path, '[controller]\nlog_level = "DEBUG"\nraft = "127.0.0.1:1111"\napi = "127.0.0.1:2222"\n')
    monkeypatch.setenv("THECLOUD_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("THECLOUD_RAFT", "127.0.0.1:3333")
    cfg = config.load({"log_level": "ERROR", "raft": None, "peers": ("127.0.0.1:4444",)}, path)
    assert cfg.log_level == "ERROR"  # flag beats env and file
    assert cfg.raft == "127.0.0.1:3333"  # an unset (None) flag does not hide the env value
    assert cfg.api == "127.0.0.1:2222"
    assert cfg.peers == ["127.0.0.1:4444"]
    assert isinstance(cfg.peers, list)


def test_empty_multi_flag_does_not_hide_lower_layers(tmp_path: Path) -> None:
    path = toml(tmp_path, 'peers = ["127.0.0.1:5555"]\n')
    assert config.load({"peers": ()}, path).peers == ["127.0.0.1:5555"]


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("TRUE", True), ("yes", True),
                                                 ("0", False), ("no", False), ("", False)])
def test_env_booleans(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("THECLOUD_INSECURE_HTTP", value)
    assert config.load({}, None).insecure_http is expected


def test_unknown_settings_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        config.load({}, toml(tmp_path, 'colour = "blue"\n'))
    with pytest.raises(ConfigError, match="unknown settings"):
        config.load({"bogus": 1}, None)


def test_unreadable_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load({}, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load({}, toml(tmp_path, "this is = = not toml"))


# -- validation --------------------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["0.0.0.0:8600", "10.1.2.3:8600", "controller.example:8600", "[::]:8600"])
def test_plain_http_on_non_loopback_refused(api: str) -> None:
    with pytest.raises(ConfigError, match="refusing plain HTTP"):
        config.load({"api": api}, None)


@pytest.mark.parametrize("api", ["127.0.0.1:8600", "127.9.9.9:80", "localhost:8600", "[::1]:8600"])
def test_plain_http_on_loopback_allowed(api: str) -> None:
    assert config.load({"api": api}, None).api == api


def test_insecure_http_or_tls_allows_non_loopback() -> None:
    assert config.load({"api": "0.0.0.0:8600", "insecure_http": True}, None).insecure_http
    cfg = config.load({"api": "0.0.0.0:8600", "tls_cert": "/c.pem", "tls_key": "/k.pem"}, None)
    assert cfg.tls_cert == "/c.pem"


def test_tls_cert_without_key_refused() -> None:
    with pytest.raises(ConfigError, match="go together"):
        config.load({"tls_cert": "/c.pem"}, None)
    with pytest.raises(ConfigError, match="go together"):
        config.load({"tls_key": "/k.pem"}, None)


@pytest.mark.parametrize(("name", "value"), [
    ("api", "8600"),
    ("api", "127.0.0.1"),
    ("api", ":8600"),
    ("api", "127.0.0.1:"),
    ("api", "127.0.0.1:0"),
    ("api", "127.0.0.1:65536"),
    ("api", "127.0.0.1:http"),
    ("raft", "127.0.0.1:-1"),
    ("raft", "nohost"),
])
def test_bad_host_port_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be HOST:PORT"):
        config.load({name: value}, None)


def test_bad_peer_refused() -> None:
    with pytest.raises(ConfigError, match=r"peer 10\.0\.0\.2 must be HOST:PORT"):
        config.load({"peers": ["10.0.0.2:8700", "10.0.0.2"]}, None)


def test_bad_value_in_env_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THECLOUD_API", "0.0.0.0:99999")
    with pytest.raises(ConfigError, match="api must be HOST:PORT"):
        config.load({}, None)


def test_is_loopback() -> None:
    assert config.is_loopback("localhost")
    assert config.is_loopback("127.0.0.1")
    assert config.is_loopback("[::1]")
    assert not config.is_loopback("0.0.0.0")
    assert not config.is_loopback("example.com")
    assert not config.is_loopback("")


# -- data dir ----------------------------------------------------------------------------------------

FP = "f" * 32


def test_prepare_creates_identity(tmp_path: Path) -> None:
    data_dir = tmp_path / "ctl"
    identity = datadir.prepare(str(data_dir), FP)
    assert identity["format"] == datadir.FORMAT
    assert identity["secret_fingerprint"] == FP
    assert len(identity["node_id"]) == 32
    stored = json.loads((data_dir / datadir.IDENTITY_FILE).read_text())
    assert stored == identity
    assert stat.S_IMODE((data_dir / datadir.IDENTITY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    # Second start: same identity, nothing rewritten.
    assert datadir.prepare(str(data_dir), FP) == identity
    assert datadir.read_identity(str(data_dir)) == identity


def test_prepare_accepts_existing_empty_dir_and_staged_restore(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert datadir.prepare(str(empty), FP)["secret_fingerprint"] == FP
    staged = tmp_path / "staged"
    datadir.stage_restore(str(staged), b"backup bytes")
    datadir.prepare(str(staged), FP)
    assert sorted(os.listdir(staged)) == [datadir.IDENTITY_FILE, datadir.RESTORE_FILE]


def test_prepare_refuses_non_empty_foreign_dir(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataDirError, match=r"is not empty but has no identity\.json"):
        datadir.prepare(str(tmp_path), FP)
    assert not (tmp_path / datadir.IDENTITY_FILE).exists()


def test_prepare_refuses_different_cluster(tmp_path: Path) -> None:
    datadir.prepare(str(tmp_path), FP)
    with pytest.raises(DataDirError, match="belongs to a different cluster"):
        datadir.prepare(str(tmp_path), "0" * 32)


@pytest.mark.parametrize("content", ["{not json", "[]", '"a string"', '{"format": 2}', "", "null"])
def test_prepare_refuses_unreadable_identity(tmp_path: Path, content: str) -> None:
    (tmp_path / datadir.IDENTITY_FILE).write_text(content)
    with pytest.raises(DataDirError, match=r"identity\.json"):
        datadir.prepare(str(tmp_path), FP)


def test_prepare_refuses_identity_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / datadir.IDENTITY_FILE).mkdir()
    with pytest.raises(DataDirError, match="unreadable or corrupted"):
        datadir.prepare(str(tmp_path), FP)


def test_prepare_checks_raft_files(tmp_path: Path) -> None:
    datadir.prepare(str(tmp_path), FP)
    (tmp_path / "raft.dump").write_bytes(b"THECLOUD-RAFT-DUMP 1\nnot-a-digest\npayload")
    with pytest.raises(DataDirError, match="Raft snapshot"):
        datadir.prepare(str(tmp_path), FP)
    (tmp_path / "raft.dump").unlink()
    (tmp_path / "raft.journal").write_bytes(b"junk")
    with pytest.raises(DataDirError, match="Raft journal"):
        datadir.prepare(str(tmp_path), FP)


def test_stage_restore_writes_pending_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    blob = encode_backup(StateData(revision=3), {"revision": 3})
    datadir.stage_restore(str(data_dir), blob)
    pending = Path(datadir.restore_path(str(data_dir)))
    assert pending.read_bytes() == blob
    assert stat.S_IMODE(pending.stat().st_mode) == 0o600
    assert os.listdir(data_dir) == [datadir.RESTORE_FILE]


def test_stage_restore_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    with pytest.raises(DataDirError, match="is not empty"):
        datadir.stage_restore(str(tmp_path), b"blob")
    assert not Path(datadir.restore_path(str(tmp_path))).exists()
    used = tmp_path / "used"
    datadir.prepare(str(used), FP)
    with pytest.raises(DataDirError, match="restore needs an empty data dir"):
        datadir.stage_restore(str(used), b"blob")
    staged = tmp_path / "staged"
    datadir.stage_restore(str(staged), b"one")
    with pytest.raises(DataDirError, match="is not empty"):
        datadir.stage_restore(str(staged), b"two")
    assert Path(datadir.restore_path(str(staged))).read_bytes() == b"one"
