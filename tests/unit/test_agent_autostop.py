"""Idle autostop (issue 16), the agent's side: what counts as idle, the idle clock, the power-off, and the
setting read live from metadata."""
from __future__ import annotations

import json

import pytest
from playground.local import metadata_server
from playground_agent import autostop, health
from playground_agent.metadata import MetadataClient
from playground_agent.schema import ConfigError, Context, parse_value

IDLE = {"tasks": 0, "runs": 0}
# /proc/net/tcp as the kernel writes it: an SSH client at 10.213.1.1:40000 (established), a listener on :22,
# a connection to the webserver on 127.0.0.1:8080 (not SSH), one half closed (TIME_WAIT, 06).
TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0201D50A:0016 0101D50A:9C40 01 00000000:00000000 02:0008A3D7 00000000     0        0 2 4
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000   999        0 3 1
   3: 0201D50A:0016 0101D50A:9C41 06 00000000:00000000 03:00001770 00000000     0        0 0 3
"""


def test_ssh_peers_are_the_established_connections_to_port_22(tmp_path):
    (tmp_path / "tcp").write_text(TCP)
    assert autostop.ssh_peers([str(tmp_path / "tcp"), str(tmp_path / "no-tcp6")]) == {"0101D50A:9C40"}


def test_an_idle_machine_powers_off_after_its_minutes_and_not_before():
    first = autostop.decide(1, 1000.0, IDLE, set(), {})
    assert (first["state"], first["idle_since"], first["stops_at"]) == ("idle", 1000.0, 1060.0)
    almost = autostop.decide(1, 1059.0, IDLE, set(), first)
    assert almost["state"] == "idle" and almost["idle_since"] == 1000.0
    assert autostop.decide(1, 1060.0, IDLE, set(), almost)["state"] == "stopping"


@pytest.mark.parametrize("work,reason", [
    ({"tasks": 2, "runs": 1}, "2 task(s) running or queued"),
    ({"tasks": 0, "runs": 1}, "1 DAG run(s) running"),
    (None, "Airflow's database did not answer"),
])
def test_work_in_flight_or_a_database_that_cannot_tell_holds_the_machine_and_resets_the_clock(work, reason):
    idle = autostop.decide(1, 1000.0, IDLE, set(), {})
    held = autostop.decide(1, 5000.0, work, set(), idle)
    assert held["state"] == "held" and reason in held["held_by"] and held["stops_at"] is None
    again = autostop.decide(1, 5010.0, IDLE, set(), held)
    assert again["state"] == "idle" and again["stops_at"] == 5070.0  # a full minute from when it ended


def test_an_ssh_connection_counts_once_it_has_lasted_a_check():
    """A tunnel or a shell holds the machine; `status`'s connection, seen at one check only, does not."""
    quick = autostop.decide(1, 1000.0, IDLE, {"peer-a"}, {})
    assert quick["state"] == "idle"
    lasting = autostop.decide(1, 1010.0, IDLE, {"peer-a", "peer-b"}, quick)
    assert lasting["state"] == "held" and lasting["held_by"] == ["1 SSH session(s) or tunnel(s) open"]
    closed = autostop.decide(1, 1020.0, IDLE, set(), lasting)
    assert closed["state"] == "idle" and closed["idle_since"] == 1020.0


def test_off_never_stops_and_a_new_setting_restarts_the_clock():
    assert autostop.decide(0, 1e9, IDLE, set(), {"minutes": 0})["state"] == "off"
    long_idle = autostop.decide(60, 1000.0, IDLE, set(), {})
    changed = autostop.decide(1, 9000.0, IDLE, set(), long_idle)  # idle for hours, then autostop 1
    assert changed["state"] == "idle" and changed["idle_since"] == 9000.0


def test_the_health_summary_counts_down_and_says_when_the_service_is_not_checking():
    state = autostop.decide(30, 1000.0, IDLE, {"0101D50A:9C40"}, {})
    assert health.autostop_summary(state, 30, now=1005.0) == {"minutes": 30, "state": "idle", "held_by": [],
                                                         "stops_in_s": 1795}
    assert "peers" not in health.autostop_summary(state, 30, now=1005.0)  # addresses stay in the root-only file
    assert health.autostop_summary(state, 30, now=1100.0)["state"] == "not checking"
    assert health.autostop_summary(state, 45, now=1005.0)["state"] == "not checking"  # the new setting not seen yet
    assert health.autostop_summary(None, 0) == {"minutes": 0, "state": "off"}


@pytest.mark.parametrize("value,minutes", [("off", 0), ("0", 0), ("1", 1), ("60", 60), ("1440", 1440)])
def test_the_attribute_takes_off_or_minutes(value, minutes):
    assert parse_value("autostop", value, Context(known_zone=lambda z: False)) == minutes


@pytest.mark.parametrize("value", ["1441", "-5", "60m", "on", "1.5", ""])
def test_a_bad_autostop_value_is_refused_naming_the_attribute(value):
    with pytest.raises(ConfigError, match=r"'autostop': expected off or minutes from 1 to 1440"):
        parse_value("autostop", value, Context(known_zone=lambda z: False))


@pytest.fixture
def metadata(tmp_path):
    doc = tmp_path / "metadata.json"
    doc.write_text(json.dumps({"instance": {"attributes": {}}, "project": {"attributes": {}}}))
    server = metadata_server.serve(metadata_server.file_loader(str(doc)), "127.0.0.1", 0)
    yield doc, MetadataClient(host="127.0.0.1:%d" % server.server_address[1], retries=1)
    server.shutdown()


def _attrs(doc, instance=None, project=None):
    doc.write_text(json.dumps({"instance": {"attributes": instance or {}}, "project": {"attributes": project or {}}}))


def test_the_setting_is_read_live_from_metadata_the_instance_over_the_project(metadata, tmp_path, monkeypatch):
    doc, client = metadata
    monkeypatch.setattr(autostop.paths, "GOOD_CONFIG", str(tmp_path / "config.json"))
    (tmp_path / "config.json").write_text(json.dumps({"autostop_minutes": 45}))
    assert autostop.current_minutes(client) == 0  # not set anywhere: off, whatever was applied before
    _attrs(doc, project={"autostop": "90"})
    assert autostop.current_minutes(client) == 90
    _attrs(doc, instance={"autostop": "5"}, project={"autostop": "90"})
    assert autostop.current_minutes(client) == 5
    _attrs(doc, instance={"autostop": "soon"})
    assert autostop.current_minutes(client) == 45  # refused: the applied setting stays
    unreachable = MetadataClient(host="127.0.0.1:9", retries=1, backoff=0)
    assert autostop.current_minutes(unreachable) == 45


def test_the_loop_powers_off_once_idle_and_records_why(tmp_path, monkeypatch):
    monkeypatch.setattr(autostop.paths, "AUTOSTOP_STATE", str(tmp_path / "run" / "autostop.json"))
    monkeypatch.setattr(autostop, "LAST_STOP_FILE", str(tmp_path / "autostop-last.json"))
    monkeypatch.setattr(autostop.paths, "RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # not asked: current_minutes is replaced
    monkeypatch.setattr(autostop, "current_minutes", lambda client: 1)
    monkeypatch.setattr(autostop, "airflow_work", lambda: dict(IDLE))
    monkeypatch.setattr(autostop, "ssh_peers", lambda: set())
    clock = [1000.0]
    monkeypatch.setattr(autostop.time, "time", lambda: clock[0])
    monkeypatch.setattr(autostop.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    ran = []
    monkeypatch.setattr(autostop.subprocess, "run", lambda cmd, **kw: ran.append(cmd) or
                        type("Done", (), {"returncode": 0})())
    assert autostop.main() == 0
    assert ran == [["systemctl", "poweroff"]]
    assert clock[0] == 1060.0  # checks every CHECK_S: off at the first check a minute after idle began
    last = json.loads((tmp_path / "autostop-last.json").read_text())
    assert last["minutes"] == 1 and last["idle_since"] == 1000.0
    assert oct((tmp_path / "run" / "autostop.json").stat().st_mode & 0o777) == "0o600"
