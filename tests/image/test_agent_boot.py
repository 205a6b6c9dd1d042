"""The agent on a booted local image: first boot, idempotence, restarts, reboots, bad metadata."""
from __future__ import annotations

import json
import time

import pytest
from playground.local import instance
from support import airflow_api, run_ok

pytestmark = pytest.mark.image


def main_pid(host, unit: str) -> str:
    return run_ok(host, f"systemctl show -p MainPID --value {unit}").strip()


def test_first_boot_made_secrets_databases_and_admin(host):
    assert run_ok(host, "sudo -u postgres psql -tAc \"SELECT datname FROM pg_database WHERE datname IN "
                        "('airflow','mlflow') ORDER BY 1\"").split() == ["airflow", "mlflow"]
    password = run_ok(host, "playground-agent admin-password").strip()
    assert len(password) >= 20
    # The admin signs in with it (basic auth on Airflow 2, a token on 3: the agent's airflow-api).
    listed = airflow_api(host, "GET", "dags")
    assert "dags" in listed and "error" not in listed, listed
    journal = run_ok(host, "journalctl -u playground-agent --no-pager -o cat")
    assert password not in journal


def test_first_boot_copies_the_image_s_migrated_database_instead_of_migrating(host):
    """The image build migrated Airflow's database (playground-agent bake-database); the first boot found it
    at the recorded revisions on its data volume and ran no migration of its own."""
    baked = json.loads(run_ok(host, "cat /etc/playground/airflow-database.json"))
    revision = run_ok(host, "sudo -u postgres psql -d airflow -tAc 'SELECT version_num FROM alembic_version'").strip()
    assert revision and baked["revisions"]["alembic_version"] == revision
    journal = run_ok(host, "journalctl -u playground-agent --no-pager -o cat")
    assert "first boot of instance" in journal and "running the Airflow database migration" not in journal
    # The build's own Airflow home (and the Fernet key 2.x writes into a new airflow.cfg) did not stay.
    assert run_ok(host, "ls /tmp /var/lib/airflow").count("airflow-bake-") == 0


def test_airflow_starts_without_warnings_about_our_settings(host):
    """Airflow 2.11 warns in every process about an unset timer_unit_consistency: the agent sets it."""
    journal = run_ok(host, "journalctl --no-pager -o cat -u airflow-scheduler@1 -u airflow-webserver "
                           "-u playground-lineage")
    assert "Starting the scheduler" in journal or "Starting gunicorn" in journal
    assert "timer_unit_consistency" not in journal


def test_apply_twice_changes_and_restarts_nothing(host):
    before = {u: main_pid(host, u) for u in ("airflow-webserver", "mlflow-server", "airflow-scheduler@1")}
    out = host.run("playground-agent apply")
    assert out.rc == 0, out.stderr
    assert "(0 file(s) changed)" in out.stderr
    after = {u: main_pid(host, u) for u in before}
    assert before == after


@pytest.mark.parametrize("who", ["main", "tree"])
@pytest.mark.parametrize("unit", ["airflow-webserver", "airflow-scheduler@1", "mlflow-server", "playground-lineage",
                                  "postgresql-cluster"])
def test_killed_service_is_back_within_15_s(host, unit, who):
    """SIGKILL of the unit's main process, or of every process of its control group at once (bench/faults.py's
    script, run here through testinfra so that it also runs on a GCE instance with --hosts): the unit is
    active again with a new main process, and the agent's live checks (the postmaster's socket, /health)
    say healthy, within 15 s."""
    from faults import AIM_BACK_S, KILL_AND_WAIT

    if unit == "postgresql-cluster":  # postgresql@VERSION-main: the postmaster, not Debian's wrapper unit
        unit = run_ok(host, "systemctl list-units 'postgresql@*' --plain --no-legend --all").split()[0]
    out = host.run("bash -c %s kill-and-wait %s %s", KILL_AND_WAIT, unit, who)
    if out.rc != 0:
        # What the machine says, so a failure in CI can be told from here (the unit's own log, the live checks).
        said = host.run("playground-agent status; systemctl show %s -p ActiveState -p SubState -p NRestarts -p Result; "
                        "journalctl -u %s --no-pager -n 25", unit, unit)
        pytest.fail(f"{unit} not back within 120 s: {out.stdout} {out.stderr}\n{said.stdout[-4000:]}")
    assert float(out.stdout.split()[-1]) < AIM_BACK_S, f"{unit} back after {out.stdout.strip()} s"


def test_reboot_keeps_secrets_and_comes_back_healthy(host, local_instance):
    secrets = run_ok(host, "sha256sum /var/lib/playground/secrets/airflow.env "
                           "/var/lib/playground/secrets/admin-password")
    instance.stop(local_instance.name)
    assert not instance.is_running(instance.load(local_instance.name))
    _, report = instance.start(local_instance.name, report=lambda s: None, timeout=240)
    assert report["healthy"]
    assert run_ok(host, "sha256sum /var/lib/playground/secrets/airflow.env "
                        "/var/lib/playground/secrets/admin-password") == secrets
    journal = run_ok(host, "journalctl -b -u playground-agent --no-pager -o cat")
    assert "first boot" not in journal
    assert "running the Airflow database migration" not in journal


def test_bad_metadata_starts_nothing_and_the_report_says_why(image, image_profile):
    name = "pgtest-bad"
    if (instance.paths.instances_dir() / name).exists():
        instance.destroy(name)
    key = instance.ssh_key().with_suffix(".pub").read_text().strip()
    inst = instance.Instance(name=name, project="playground-test", profile=image_profile, image=str(image),
                             slot=instance.free_slot(), instance_id="1111111111111111111", created_at=time.time(),
                             attributes={"airflow-schedulers": "9", "ssh-keys": f"{instance.SSH_USER}:{key}"})
    inst.save()
    try:
        instance.boot(inst)
        deadline = time.monotonic() + 120
        report = None
        while time.monotonic() < deadline and report is None:
            report = instance.health(inst)
            time.sleep(2)
        assert report is not None, "no health report over SSH"
        assert report["config"]["state"] == "error"
        assert "airflow-schedulers" in report["last_error"]
        states = instance.remote(inst, "systemctl is-active airflow-webserver mlflow-server "
                                       "airflow-scheduler@1 playground.target").stdout.split()
        assert states == ["inactive"] * 4
        assert instance.remote(inst, "test -e /etc/playground/airflow.env").returncode != 0
    finally:
        removed = instance.destroy(name)
    assert any(r.startswith("netns") for r in removed)
    assert not (instance.paths.instances_dir() / name).exists()
    json.dumps(removed)


def test_hostile_metadata_values_are_refused_in_one_line_and_start_nothing(request, local_instance):
    """Served to the running instance one after the other and applied by the agent as at boot (the metadata
    watch is not enabled, so an edit on GCE takes effect at the next boot): each refused with one line naming
    the attribute, the last good config kept, no service restarted or started, no injected command run; the
    good attributes applied again after each."""
    if request.config.getoption("hosts"):
        pytest.skip("serves values through the local metadata server")
    from faults import hostile_values

    results = hostile_values(local_instance)
    wrong = [r for r in results if not (r["handled"] and r["nothing_started"])]
    assert not wrong, wrong
    assert len(results) >= 20


def test_a_metadata_server_failing_at_boot_is_outlasted(request, local_instance):
    """A boot against a metadata server answering HTTP 500 for 45 s, with the agent's patience cut to 40 s:
    it retries with backoff, starts the last good config's services while it waits, gives up inside the
    window (exit 75), systemd runs it again, and once metadata answers the instance is healthy."""
    if request.config.getoption("hosts"):
        pytest.skip("boots the local instance against the local metadata server's drill")
    from faults import failing_metadata_boot

    got = failing_metadata_boot(local_instance, fail_s=45, patience=40)
    assert got["healthy_after_recovery_s"] is not None and got["healthy_after_recovery_s"] < 60, got
    assert got["retries"] >= 4, got
    assert got["agent_restarts"] >= 1, f"systemd did not run the agent again after it gave up: {got}"
    assert got["served_meanwhile"], f"the last good config's webserver did not run while the agent waited: {got}"


def test_no_secret_on_any_command_line_during_first_boot(request, image, image_profile):
    """Every process of a first boot, from this machine's side (it sees the container's processes): their
    command lines, read every 50 ms from launch to healthy, hold none of the secrets made at that boot."""
    if request.config.getoption("hosts"):
        pytest.skip("reads a local instance's processes from this machine")
    import threading
    from pathlib import Path

    from launch import descendants
    from support import remove_instance

    name = "pgtest-argv"
    remove_instance(name)
    seen: set[str] = set()
    booting = threading.Event()
    booting.set()

    def watch(root: int) -> None:
        while booting.is_set():
            for pid in descendants(root):
                try:
                    seen.add(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8",
                                                                                                 "replace"))
                except OSError:
                    pass
            time.sleep(0.05)

    inst, _ = instance.launch(name, "playground-test", {}, image, image_profile, report=lambda s: None, wait=False)
    watcher = threading.Thread(target=watch, args=(inst.pids["nspawn"],), daemon=True)
    watcher.start()
    try:
        rep = instance.wait_healthy(inst, 300, report=lambda s: None)
        assert rep["healthy"]
        booting.clear()
        watcher.join(10)
        secrets_dir = inst.dir / "data/secrets"  # on the data volume (agent's data.py), outside the rootfs
        secrets = [(secrets_dir / "admin-password").read_text().strip()]
        for line in (secrets_dir / "airflow.env").read_text().splitlines():
            key, _, value = line.partition("=")
            secrets.append(value.strip().strip('"'))
        secrets = [s for s in secrets if len(s) >= 8]
        assert len(secrets) >= 2 and len(seen) > 50, f"{len(secrets)} secrets, {len(seen)} command lines"
        leaked = [(s[:4] + "...", argv[:120]) for s in secrets for argv in seen if s in argv]
        assert not leaked, leaked
    finally:
        booting.clear()
        remove_instance(name)
