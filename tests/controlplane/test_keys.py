"""The cookie-signing key: made once in the state directory, or derived from the HA secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.controlplane.keys import KEY_FILE, persistence_key
from appliance.core.config import parse_config
from appliance.core.model import Config
from appliance.errors import StartError


def config(tmp_path: Path, persistence: str = "{type: cookie}", ha: str = "") -> Config:
    text = f"""\
appliance: {{state_file: {tmp_path}/var/state.json}}
pools:
  web: {{members: [{{address: 127.0.0.1:9001, cookie_value: a}}]}}
virtual_servers:
  web: {{listen: [127.0.0.1:8080], pool: web, persistence: {persistence}}}
{ha}"""
    return parse_config(text, "t.yaml")


def ha(secret: Path) -> str:
    return f"ha: {{listen: 127.0.0.1:9911, peers: [127.0.0.1:9912], secret_file: {secret}}}\n"


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = persistence_key(config(tmp_path))
    path = tmp_path / "var" / KEY_FILE
    assert first is not None and len(first) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert persistence_key(config(tmp_path)) == first  # a restart honours the cookies already out


@pytest.mark.parametrize(
    "persistence",
    ["{type: source_address}", "{mode: passive}", "{encoding: f5}"],
)
def test_no_key_when_nothing_is_signed(tmp_path: Path, persistence: str) -> None:
    assert persistence_key(config(tmp_path, persistence)) is None
    assert not (tmp_path / "var").exists()


def test_ha_peers_derive_the_same_key_from_their_shared_secret(tmp_path: Path) -> None:
    secret = tmp_path / "ha.key"
    secret.write_text("a shared secret of enough length\n")
    mine = persistence_key(config(tmp_path / "a", ha=ha(secret)))
    peer = persistence_key(config(tmp_path / "b", ha=ha(secret)))
    secret.write_text("another shared secret, long enough\n")
    other = persistence_key(config(tmp_path / "a", ha=ha(secret)))
    assert mine is not None and mine == peer != other
    assert not (tmp_path / "a" / "var" / KEY_FILE).exists()  # the state directory's key is not used


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("short\n", "too short"),
    ],
)
def test_a_missing_or_weak_ha_secret_is_a_start_error(tmp_path: Path, content: str | None, message: str) -> None:
    secret = tmp_path / "ha.key"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(StartError, match=message) as caught:
        persistence_key(config(tmp_path, ha=ha(secret)))
    assert str(secret) in str(caught.value)


def test_a_malformed_key_file_is_a_start_error_that_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / KEY_FILE).write_text("not hex\n")
    with pytest.raises(StartError, match="delete it") as caught:
        persistence_key(config(tmp_path))
    assert KEY_FILE in str(caught.value)
