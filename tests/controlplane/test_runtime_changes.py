"""Runtime changes (the admin API's): admin states, members added and removed, across reloads and restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.controlplane import state_file
from appliance.controlplane.runtime import Runtime
from appliance.core.config import parse_config, parse_member
from appliance.core.model import AdminState
from appliance.core.overrides import Overrides

CONFIG = """\
appliance: {{state_file: {state}}}
pools:
  web:
    static: {static}
    members:
      - {{address: 127.0.0.1:9001, name: a{a_extra}}}
      - {{address: 127.0.0.1:9002, name: b}}
virtual_servers:
  web: {{listen: [127.0.0.1:8080], pool: web}}
"""


def config_text(state: str = "var/state.json", static: str = "false", a_extra: str = "") -> str:
    return CONFIG.format(state=state, static=static, a_extra=a_extra)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def runtime(text: str | None = None) -> Runtime:
    return Runtime(parse_config(text or config_text(), "t.yaml"), Clock())


def names(rt: Runtime) -> list[str]:
    return [m.name for m in rt.snapshot.pools["web"].members]


def test_an_admin_state_set_at_runtime_is_applied_with_its_source_and_an_event() -> None:
    rt = runtime()
    view = rt.set_admin_state("web", "a", AdminState.DISABLED, "api")
    assert view.admin_state is AdminState.DISABLED and view.admin_source == "api"
    pool = rt.snapshot.pools["web"]
    assert not pool.member("a").ready and pool.member("b").admin_source == "config"
    assert {pool.select(None, 200.0).name for _ in range(4)} == {"b"}
    assert rt.events[-1].source == "api" and "web/a admin state enabled -> disabled" in rt.events[-1].message
    with pytest.raises(KeyError):
        rt.set_admin_state("web", "zz", AdminState.DISABLED, "api")
    with pytest.raises(KeyError):
        rt.set_admin_state("nope", "a", AdminState.DISABLED, "api")


def test_a_runtime_admin_state_survives_a_reload_unless_the_file_changes_that_member() -> None:
    rt = runtime()
    rt.set_admin_state("web", "a", AdminState.DISABLED, "api")
    rt.reload(parse_config(config_text(), "t.yaml"))
    assert rt.snapshot.pools["web"].member("a").admin_state is AdminState.DISABLED  # HAProxy #2085: not reset
    rt.reload(parse_config(config_text(a_extra=", state: forced_offline"), "t.yaml"))
    member = rt.snapshot.pools["web"].member("a")
    assert member.admin_state is AdminState.FORCED_OFFLINE and member.admin_source == "config"
    assert not rt.overrides.admin


def test_added_members_take_traffic_and_conflicts_are_refused() -> None:
    rt = runtime()
    view = rt.add_member("web", parse_member({"address": "127.0.0.1:9003", "name": "c"}), "api")
    assert view.name == "c" and view.admin_source == "api"
    assert names(rt) == ["a", "b", "c"]
    assert {rt.snapshot.pools["web"].select(None, 200.0).name for _ in range(6)} == {"a", "b", "c"}
    with pytest.raises(ValueError, match="already has member a"):
        rt.add_member("web", parse_member({"address": "127.0.0.1:9009", "name": "a"}), "api")
    with pytest.raises(ValueError, match="already has member b"):
        rt.add_member("web", parse_member({"address": "127.0.0.1:9002", "name": "x"}), "api")
    rt.reload(parse_config(config_text(), "t.yaml"))
    assert names(rt) == ["a", "b", "c"]  # kept over a reload


def test_a_removed_member_takes_nothing_new_and_drains_its_connections() -> None:
    rt = runtime()
    b = rt.snapshot.pools["web"].member("b")
    b.stats.opened()  # one connection still open on it
    rt.remove_member("web", "b", "api")
    assert names(rt) == ["a"]
    assert {rt.snapshot.pools["web"].select(None, 200.0).name for _ in range(4)} == {"a"}
    assert [m.name for m in rt.draining("web")] == ["b"]
    b.stats.closed()
    assert rt.draining("web") == []
    with pytest.raises(KeyError):
        rt.remove_member("web", "b", "api")


def test_state_file_round_trip_restores_changes_at_the_next_start(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    text = config_text(state=path)
    rt = runtime(text)
    rt.set_admin_state("web", "a", AdminState.DISABLED, "api")
    rt.add_member("web", parse_member({"address": "127.0.0.1:9003", "name": "c", "ratio": 3}), "api")
    rt.remove_member("web", "b", "api")
    state_file.save_json(path, rt.overrides.to_json(), "lb-a")
    config = parse_config(text, "t.yaml")
    again = Runtime(config, Clock())
    assert again.restore(state_file.load(path, config)) == []
    pool = again.snapshot.pools["web"]
    assert names(again) == ["a", "c"]
    assert pool.member("a").admin_state is AdminState.DISABLED and pool.member("a").admin_source == "state-file"
    assert pool.member("c").ratio == 3 and pool.member("c").admin_source == "state-file"


def test_a_static_pool_is_reseeded_from_the_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "state.json")
    overrides = Overrides(admin={("web", "a"): (AdminState.DISABLED, "api")})
    state_file.save_json(path, overrides.to_json(), "lb-a")
    config = parse_config(config_text(state=path, static="true"), "t.yaml")
    rt = Runtime(config, Clock())
    rt.restore(state_file.load(path, config))
    assert rt.snapshot.pools["web"].member("a").admin_state is AdminState.ENABLED
    assert "pool web is static: its 1 runtime change(s) are not re-applied" in caplog.text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "Expecting property name"),
        ("[1, 2]", "not a JSON object"),
        ('{"version": 99}', "version 99"),
        ('{"version": 1, "added_members": [{"pool": "web", "member": {"address": "nowhere"}}]}', "address"),
        ('{"version": 1, "admin_states": [{"pool": "web", "member": "a", "state": "sleeping"}]}', "sleeping"),
    ],
)
def test_a_corrupt_state_file_is_reported_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, reason: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    config = parse_config(config_text(state=str(path)), "t.yaml")
    assert state_file.load(str(path), config).to_json() == Overrides().to_json()
    assert f"state file {path} ignored" in caplog.text and reason in caplog.text


def test_stale_entries_are_dropped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({
        "version": 1,
        "admin_states": [{"pool": "web", "member": "gone", "state": "disabled"}, {"pool": "old", "member": "x", "state": "disabled"}],
        "added_members": [{"pool": "old", "member": {"address": "127.0.0.1:9100"}}],
    }))
    config = parse_config(config_text(state=str(path)), "t.yaml")
    rt = Runtime(config, Clock())
    stale = rt.restore(state_file.load(str(path), config))
    assert any("web/gone" in line for line in stale) and any("old/x" in line for line in stale)
    assert names(rt) == ["a", "b"] and not rt.overrides.added


def test_the_state_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    state_file.save_json(str(path), Overrides().to_json(), "lb-a")
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["node"] == "lb-a"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind


def test_a_member_removed_then_added_anew_stays_the_operators_over_reloads_and_restarts(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    text = config_text(state=path)
    rt = runtime(text)
    rt.remove_member("web", "a", "api")
    rt.add_member("web", parse_member({"address": "127.0.0.1:9011", "name": "a"}), "api")
    rt.reload(parse_config(text, "t.yaml"))
    assert [(m.name, m.address.port) for m in rt.snapshot.pools["web"].members] == [("b", 9002), ("a", 9011)]
    state_file.save_json(path, rt.overrides.to_json(), "lb-a")
    config = parse_config(text, "t.yaml")
    again = Runtime(config, Clock())
    again.restore(state_file.load(path, config))
    assert [(m.name, m.address.port) for m in again.snapshot.pools["web"].members] == [("b", 9002), ("a", 9011)]
    again.reload(parse_config(config_text(state=path, a_extra=", ratio: 5"), "t.yaml"))  # the file edits a: it decides
    assert [(m.name, m.address.port, m.ratio) for m in again.snapshot.pools["web"].members] == [("a", 9001, 5), ("b", 9002, 1)]
    assert not again.overrides.added and not again.overrides.removed


def test_snat_address_changes_are_kept_and_restored_unless_the_snat_pool_is_static(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    text = config_text(state=path) + (
        "address_sets:\n  dc1: [127.0.0.40, 127.0.0.41]\n"
        "snat_pools:\n  out: {draw: [{from: dc1, count: 5}], static: false}\n  fixed: {addresses: [127.0.0.50]}\n"
    )
    rt = runtime(text)
    assert rt.add_address("address_sets", "dc1", "127.0.0.42", "api") == ("127.0.0.40", "127.0.0.41", "127.0.0.42")
    assert rt.remove_address("address_sets", "dc1", "127.0.0.40", "api") == ("127.0.0.41", "127.0.0.42")
    rt.add_address("snat_pools", "fixed", "127.0.0.51", "api")
    with pytest.raises(ValueError):
        rt.add_address("address_sets", "dc1", "127.0.0.41", "api")
    with pytest.raises(KeyError):
        rt.remove_address("address_sets", "dc1", "127.0.0.99", "api")
    state_file.save_json(path, rt.overrides.to_json(), "lb-a")
    config = parse_config(text, "t.yaml")
    again = Runtime(config, Clock())
    again.restore(state_file.load(path, config))
    assert again.config.address_sets["dc1"].addresses == ("127.0.0.41", "127.0.0.42")
    assert again.config.snat_pools["fixed"].addresses == ("127.0.0.50",)  # static (the default): re-seeded
