"""Worker machines (issue 17) on the agent's side: the roles' rules in the attribute schema, the files a
main and a worker get (nothing listening beyond 127.0.0.1 and the private address, passwords only in
root-only files), pg_hba's block replaced and never doubled, the handover's refusals, and the broker check
against a real Redis protocol exchange."""
from __future__ import annotations

import socket
import threading

import pytest
from playground_agent import cluster, render, schema, worker_probes
from playground_agent.config import Config
from playground_agent.versions import Airflow
from support import agent_config

CTX = schema.Context(known_zone=lambda z: True)
MAIN = {"airflow-executor": "CeleryExecutor", "private-subnet": "10.214.7.0/24"}
WORKER = dict(MAIN, **{"role": "worker", "main-address": "10.214.7.1"})


@pytest.mark.parametrize("attrs,attribute,expected", [
    ({"role": "worker"}, "airflow-executor", "CeleryExecutor on a worker"),
    ({"airflow-executor": "CeleryExecutor"}, "private-subnet", "a private network when airflow-executor"),
    (dict(WORKER, **{"main-address": ""}), "main-address", "the main machine's address on a worker"),
    (dict(WORKER, **{"main-address": "10.99.0.1"}), "main-address", "an address in private-subnet"),
    (dict(MAIN, **{"private-subnet": "8.8.8.0/24"}), "private-subnet", "a private IPv4 network"),
    (dict(MAIN, **{"private-subnet": "10.214.7.5/24"}), "private-subnet", "a private IPv4 network"),
    (dict(MAIN, **{"private-subnet": "10.0.0.0/8"}), "private-subnet", "(/16 to /29)"),
    (dict(WORKER, **{"main-address": "10.214.7.300"}), "main-address", "an IPv4 address"),
    (dict(WORKER, **{"worker-concurrency": "0"}), "worker-concurrency", "an integer from 1 to 64"),
    (dict(MAIN, **{"role": "boss"}), "role", "one of main, worker"),
])
def test_a_bad_cluster_setting_names_the_attribute(attrs, attribute, expected):
    with pytest.raises(schema.ConfigError) as err:
        schema.parse_attributes(attrs, CTX)
    assert err.value.attribute == attribute and expected in str(err.value)


def test_good_main_and_worker_settings_parse():
    assert schema.parse_attributes(MAIN, CTX)["private_subnet"] == "10.214.7.0/24"
    assert schema.parse_attributes(WORKER, CTX)["main_address"] == "10.214.7.1"


def config(**attrs) -> Config:
    return agent_config(**attrs)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine's folders under tmp_path, with Debian's pg_hba and this machine at 10.214.7.1."""
    conf = tmp_path / "etc/postgresql/15/main"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "pg_hba.conf").write_text("local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    monkeypatch.setattr(cluster.paths, "p", lambda path: str(tmp_path) + path)
    monkeypatch.setattr(cluster, "CLUSTER_ENV", str(secrets / "cluster.env"))
    monkeypatch.setattr(cluster, "own_address", lambda subnet: "10.214.7.1")
    monkeypatch.setattr(cluster, "installed", lambda: Airflow("2.11.2"))
    return tmp_path


def test_a_main_listens_on_its_private_address_and_keeps_the_passwords_in_root_only_files(machine):
    files = cluster.files(config(**MAIN))
    redis = files[cluster.REDIS_CONF]
    assert "bind 127.0.0.1 10.214.7.1\n" in redis.content and redis.mode == 0o640 and redis.group == "redis"
    password = cluster.ensure_main_secrets()["BROKER_PASSWORD"]
    assert len(password) == 32 and "requirepass %s\n" % password in redis.content
    celery_env = files[cluster.CELERY_ENV]
    assert celery_env.mode == 0o600 and password in celery_env.content
    for path, spec in files.items():  # no password anywhere a service user or a log could read
        if spec.mode & 0o077 and path != cluster.REDIS_CONF:
            assert password not in spec.content, path
    forward = files[cluster.FORWARD_ENV].content
    assert 'LISTEN="TCP-LISTEN:5000,bind=10.214.7.1,fork,reuseaddr,range=10.214.7.0/24"' in forward
    conf = [spec.content for path, spec in files.items() if path.endswith(cluster.PG_PRIVATE_CONF)][0]
    assert "listen_addresses = '127.0.0.1,10.214.7.1'" in conf
    assert cluster.files(config(**MAIN))[cluster.REDIS_CONF] == redis  # the same password every time


def test_pg_hba_gets_one_block_for_the_subnet_never_two(machine):
    hba = machine / "etc/postgresql/15/main/pg_hba.conf"
    once = cluster.files(config(**MAIN))[str(hba)].content
    hba.write_text(once)
    twice = cluster.files(config(**dict(MAIN, **{"private-subnet": "10.214.9.0/24"})))[str(hba)].content
    assert twice.count(cluster.HBA_BEGIN) == 1 and "10.214.9.0/24" in twice and "10.214.7.0/24" not in twice
    assert twice.startswith("local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n")
    assert "host    airflow,warehouse    airflow    10.214.9.0/24    scram-sha-256" in twice


def test_a_worker_without_its_handover_is_refused_in_one_line(machine):
    with pytest.raises(cluster.ClusterError, match="lacks BROKER_PASSWORD, DB_PASSWORD, AIRFLOW__CORE__FERNET_KEY"):
        cluster.files(config(**WORKER))


def test_a_worker_uses_the_main_for_everything_with_the_handed_over_secrets(machine, tmp_path):
    (machine / "main-secrets.env").write_text('AIRFLOW__CORE__FERNET_KEY="fk"\nAIRFLOW__WEBSERVER__SECRET_KEY="sk"\n')
    handed = cluster.handover(str(machine / "main-secrets.env"))  # on the main
    (tmp_path / "secrets/cluster.env").write_text(handed)  # the launcher's copy, on the worker
    files = cluster.files(config(**WORKER))
    env = files[cluster.CELERY_ENV]
    assert env.mode == 0o600
    assert 'AIRFLOW__CORE__FERNET_KEY="fk"' in env.content and 'AIRFLOW__WEBSERVER__SECRET_KEY="sk"' in env.content
    assert "@10.214.7.1:5432/airflow" in env.content and "@10.214.7.1:6379/0" in env.content
    assert 'TO="TCP:10.214.7.1:5000"' in files[cluster.FORWARD_ENV].content
    assert cluster.REDIS_CONF not in files and not any("pg_hba" in p for p in files)


def test_local_executor_machines_get_none_of_it(machine):
    assert cluster.files(config()) == {}
    wants = render.render(config(), cpus=2, airflow=Airflow("2.11.2"), slow=False)
    assert not any("redis" in spec.content for spec in wants.values())


def test_a_lost_task_is_requeued_within_minutes_and_a_long_one_is_never_handed_out_twice():
    env = render.airflow_env(config(**MAIN), 2, Airflow("2.11.2"))
    # Taken by a worker that died before starting it: revoked and queued again by the scheduler.
    assert float(env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]) + float(
        env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL"]) <= 360
    # No visibility timeout of ours: Redis would hand a task running longer to a second worker, and
    # Airflow's runner then kills the first (hostname mismatch). Airflow's own (84600 s) applies.
    assert not any("VISIBILITY_TIMEOUT" in key for key in env)
    assert "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT" not in render.airflow_env(config(), 2, Airflow("2.11.2"))


class FakeRedis:
    """A listener speaking Redis's protocol for AUTH, PING and LLEN (4 tasks waiting in `default`)."""

    def __init__(self, password: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, args=(password,), daemon=True).start()

    def serve(self, password: str) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while data.count(b"\r\n") < 13:  # AUTH (5 lines), PING (3), LLEN (5)
                data += conn.recv(4096)
            good = ("$%d\r\n%s\r\n" % (len(password), password)).encode() in data
            waiting = b":4\r\n" if data.endswith(b"$4\r\nLLEN\r\n$7\r\ndefault\r\n") else b"-ERR\r\n"
            conn.sendall(b"+OK\r\n+PONG\r\n" + waiting if good else
                         b"-WRONGPASS invalid username-password pair\r\n-NOAUTH\r\n-NOAUTH\r\n")


@pytest.mark.parametrize("given,ok,said", [("s3cret", True, "connected"), ("wrong", False, "refused: -WRONGPASS")])
def test_the_broker_check_authenticates_and_says_why_not(machine, monkeypatch, given, ok, said):
    monkeypatch.setattr(worker_probes.paths, "SECRETS_DIR", str(machine / "secrets"))
    (machine / "secrets/cluster.env").write_text('BROKER_PASSWORD="%s"\n' % given)
    redis = FakeRedis("s3cret")
    state = worker_probes.broker_state("127.0.0.1", worker_probes.cluster_secrets()["BROKER_PASSWORD"], redis.port)
    assert state["ok"] is ok and said in (state["state"] + state["reason"])
    if ok:  # the queue every task goes to, and how many wait in it
        assert (state["queue"], state["waiting"]) == ("default", 4)


def test_an_unreachable_broker_is_said_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = worker_probes.broker_state("127.0.0.1", "any", port, timeout=1)
    assert not state["ok"] and "not reachable" in state["reason"]
