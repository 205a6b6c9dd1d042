"""Fault figures on a local instance (issue 18): each service killed with SIGKILL and timed back to
healthy, a boot against a metadata server failing for 30 s, stop/start cycles with the runs counted
before and after, and hostile metadata values each refused in one line with nothing started.

Run as root on a machine with a built local image:
    .venv/bin/python bench/faults.py [--cycles 10]
Aims: every service healthy again under 15 s after SIGKILL of its main process; 10 of 10 cycles healthy
with 0 runs lost; every hostile value refused. The kill times are measured inside the instance (one
clock), from the kill to the first `playground-agent status` that says healthy with a new main process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

from common import Row, bench_instance, print_rows
from playground.local import instance

AIM_BACK_S = 15
NAME = "pgbenchfaults"
# The services whose main process is killed; the PostgreSQL cluster unit is found on the instance.
KILLED = ("airflow-webserver.service", "airflow-scheduler@1.service", "mlflow-server.service",
          "playground-lineage.service", "POSTGRES_CLUSTER")

# Kill the unit's main process ($2 = main) or every process of its control group at once ($2 = tree: what an
# OOM kill of the whole group or a crash of everything looks like, with no systemd kill involved), then wait
# until the unit is active with a new main process and the agent's live checks say healthy. Prints the
# seconds, or "timeout" (exit 1) after 120 s. The cgroup's files are where the machine mounts them: the
# unified hierarchy beside v1 (nspawn instances on this host, Ubuntu 18.04), or cgroup2 alone (Ubuntu 24.04).
KILL_AND_WAIT = r"""
unit="$1"; who="${2:-main}"
# The unit running, with a control group of its own, before anything is killed: an empty ControlGroup (a
# unit between a crash and its restart) would make the path below the root's, and `tree` would kill every
# process of the machine, sshd included (seen once in CI as SSH's exit 255).
for _ in $(seq 1 100); do
  cg="$(systemctl show -p ControlGroup --value "$unit")"
  if [ "$(systemctl is-active "$unit")" = active ] && [ -n "$cg" ] && [ "$cg" != / ]; then break; fi
  cg=""
  sleep 0.3
done
if [ -z "$cg" ]; then echo "$unit is not running in a control group of its own: not killed"; exit 1; fi
old="$(systemctl show -p MainPID --value "$unit")"
for base in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup; do
  if [ -f "$base$cg/cgroup.procs" ]; then procs="$base$cg/cgroup.procs"; break; fi
done
if [ "$who" = tree ] && [ -z "${procs:-}" ]; then echo "no cgroup.procs for $unit ($cg)"; exit 1; fi
t0="$(cut -d' ' -f1 /proc/uptime)"
if [ "$who" = tree ]; then
  # Without 0: a process of another PID namespace in the same cgroup (here every container's units share
  # their paths) reads as 0, and `kill -9 0` would kill this very shell's process group.
  # shellcheck disable=SC2046 # one PID per word
  kill -9 $(grep -vx 0 "$procs")
else
  systemctl kill -s KILL --kill-who=main "$unit"
fi
while :; do
  now="$(cut -d' ' -f1 /proc/uptime)"
  if awk -v a="$now" -v b="$t0" 'BEGIN { exit !(a - b > 120) }'; then echo "timeout"; exit 1; fi
  pid="$(systemctl show -p MainPID --value "$unit")"
  if [ "$pid" != 0 ] && [ "$pid" != "$old" ] && [ "$(systemctl is-active "$unit")" = active ] \
     && playground-agent status >/dev/null 2>&1; then
    awk -v a="$(cut -d' ' -f1 /proc/uptime)" -v b="$t0" 'BEGIN { printf "%.2f\n", a - b }'
    exit 0
  fi
  sleep 0.3
done
"""

# An empty value means the attribute's default (so an instance can unset a project-wide value: the
# README's attribute table): applied, nothing restarted when the default is what runs.
EMPTY = ("airflow-schedulers", "", "empty (the default, by design)")
# (attribute, value, why it is hostile). Each must be refused by the agent at apply, the error naming the
# attribute in one line, the last good config kept and nothing restarted or started.
HOSTILE = [
    ("airflow-schedulers", "2; touch /tmp/pwned", "shell injection"),
    ("airflow-parallelism", "1e9", "wrong type"),
    ("airflow-port", "22", "a port in use (sshd)"),
    ("mlflow-port", "8080", "a port in use (the webserver)"),
    ("airflow-port", "80000", "out of range"),
    ("timezone", "../../../etc/passwd", "path injection"),
    ("timezone", "$(reboot)", "shell injection"),
    ("dags-bucket", "b" * 300, "overlong"),
    ("logs-bucket", "../logs", "path injection"),
    ("airflow-admin-user", "ädmin\u202e", "unicode (right-to-left override)"),
    ("airflow-admin-user", "-rf", "option injection"),
    ("gcp-project", "$(id)", "shell injection"),
    ("lineage", "maybe", "not one of on/off"),
    ("telemetry", "yes please", "not one of on/off"),
    ("mlflow-backend", "sqlite:////etc/shadow", "not a backend"),
    ("cloudsql-instance", "p:r:i;reboot", "shell injection"),
    ("artifacts-root", "file:///etc", "outside the machine's artifact store"),
    ("airflow-schedulers", "\x00", "NUL byte"),
    ("ssh-keys", "root:ssh-ed25519 AAAA x\nroot:" + "A" * 5000, "overlong key list"),
]


def ssh(inst, command: str, stdin: str = "", timeout: float = 300):
    """command on the instance over SSH, stdin fed to it: the completed process, whatever its exit code."""
    return subprocess.run(instance.ssh_args(inst) + [command], input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def remote(inst, command: str, stdin: str = "", timeout: float = 180) -> str:
    proc = ssh(inst, command, stdin, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{command}: {proc.stdout.strip()} {proc.stderr.strip()}")
    return proc.stdout


def postgres_cluster(inst) -> str:
    out = remote(inst, "systemctl list-units 'postgresql@*' --plain --no-legend --all")
    return out.split()[0]


def kill_back_seconds(inst, unit: str, who: str = "main") -> float:
    return float(remote(inst, f"sudo -n bash -s {unit} {who}", stdin=KILL_AND_WAIT).split()[-1])


def main_pids(inst) -> dict:
    units = "airflow-webserver airflow-scheduler@1 airflow-scheduler@2 mlflow-server playground-lineage"
    out = remote(inst, f"for u in {units}; do echo $u $(systemctl show -p MainPID --value $u); done")
    return dict(line.split() for line in out.splitlines())


def apply_attributes(inst, attributes: dict) -> tuple[int, str]:
    """Serve these attributes (the metadata server re-reads its file on every request, as GCE serves an
    edited instance's metadata) and run the agent's apply, as every boot does: (exit code, its stderr)."""
    doc_path = inst.dir / "metadata.json"
    doc = json.loads(doc_path.read_text())
    doc["instance"]["attributes"] = attributes
    doc_path.write_text(json.dumps(doc, indent=2))
    proc = ssh(inst, "sudo -n playground-agent apply")
    return proc.returncode, proc.stderr


def config_state(inst) -> dict:
    """The agent's record of its last apply (state, error, generation, applied_at)."""
    return json.loads(remote(inst, "sudo -n cat /var/lib/playground/config-state.json"))


def hostile_values(inst) -> list[dict]:
    """Each hostile value served to the running instance, in turn: what the agent said, and whether
    anything was restarted or started. The good attributes are served again after each."""
    good = dict(inst.attributes)
    results = []
    for attribute, value, why in [EMPTY] + HOSTILE:
        before = main_pids(inst)
        code, said = apply_attributes(inst, {**good, attribute: value})
        state = config_state(inst)
        error = state.get("error", "")
        restored, _ = apply_attributes(inst, good)
        if restored != 0:
            raise RuntimeError(f"the good attributes did not apply again after {attribute} ({why})")
        pwned = remote(inst, "test -e /tmp/pwned && echo yes || echo no").strip() == "yes"
        if (attribute, value, why) == EMPTY:
            handled = code == 0 and state.get("state") == "ok"
        else:  # refused: exit 1, the error names the attribute in one line, and apply said just that
            named = [line for line in said.splitlines() if attribute in line]
            handled = (code == 1 and bool(error) and attribute in error and "\n" not in error.strip()
                       and len(named) == 1)
        results.append({"attribute": attribute, "why": why, "error": error, "handled": handled, "exit": code,
                        "said": [line for line in said.splitlines() if "playground-agent" in line][-3:],
                        "nothing_started": main_pids(inst) == before and not pwned})
    return results


def run_counts(inst) -> tuple[int, int]:
    """(DAG runs, MLflow runs) as each database holds them."""
    def count(db: str, table: str) -> int:
        return int(remote(inst, f"sudo -n -u postgres psql -tAc 'SELECT count(*) FROM {table}' {db}").strip())

    return count("airflow", "dag_run"), count("mlflow", "runs")


def make_runs(inst) -> None:
    remote(inst, "sudo -n airflow dags trigger mlflow_connection_test >/dev/null")
    remote(inst, "curl -sf -X POST -H 'Content-Type: application/json' -d '{\"experiment_id\": \"0\"}' "
                 "http://127.0.0.1:5000/api/2.0/mlflow/runs/create >/dev/null")


def cycles(inst, n: int) -> tuple[int, int, list[float]]:
    """n stop/start cycles: (healthy after start, runs lost, start-to-healthy seconds)."""
    make_runs(inst)
    before = run_counts(inst)
    healthy, seconds = 0, []
    for _ in range(n):
        instance.stop(inst.name)
        t0 = time.monotonic()
        _, report = instance.start(inst.name, report=lambda s: None, timeout=240)
        seconds.append(time.monotonic() - t0)
        healthy += bool(report and report.get("healthy"))
    inst = instance.load(inst.name)
    after = run_counts(inst)
    return healthy, sum(max(0, b - a) for b, a in zip(before, after, strict=True)), seconds


# Polled over SSH about once a second: whether the webserver runs, the agent unit's sub-state ("start" while
# apply runs, "auto-restart" between runs, "exited" once an apply succeeded) and its live checks.
BOOT_PROBE = ("sudo -n sh -c 'w=$(systemctl is-active airflow-webserver);"
              " a=$(systemctl show -p SubState --value playground-agent);"
              " playground-agent status >/dev/null 2>&1 && h=yes || h=no; echo $w $a $h'")


def failing_metadata_boot(inst, fail_s: float = 30.0, patience: float | None = None, timeout: float = 300) -> dict:
    """Stop the instance and boot it against a metadata server that answers HTTP 500 for its first fail_s
    seconds (the local provider's drill, PLAYGROUND_LOCAL_METADATA_FAIL_S). patience: the agent's own (in
    /etc/playground/agent.env, removed after), short enough to make it give up so that systemd runs it again.
    The window is counted from before the server starts, so "after recovery" errs long. served_meanwhile:
    the last good config's webserver ran while the agent was still waiting for metadata."""
    if patience is not None:
        remote(inst, "sudo -n tee /etc/playground/agent.env >/dev/null",
               stdin=f"PLAYGROUND_METADATA_PATIENCE={patience:g}\n")
    try:
        instance.stop(inst.name)
        os.environ[instance.METADATA_FAULT_ENV] = f"{fail_s:g}"
        try:
            t0 = time.monotonic()
            instance.start(inst.name, report=lambda s: None, wait=False)
        finally:
            del os.environ[instance.METADATA_FAULT_ENV]
        inst = instance.load(inst.name)
        recovered, served_meanwhile, healthy_at = t0 + fail_s, False, None
        while time.monotonic() < recovered + timeout:
            try:  # before sshd is up: no output, and the loop goes on
                webserver, agent, healthy = (ssh(inst, BOOT_PROBE, timeout=15).stdout.split() + ["", "", ""])[:3]
            except subprocess.TimeoutExpired:
                webserver, agent, healthy = "", "", ""
            now = time.monotonic()
            if webserver == "active" and agent == "start" and now < recovered:
                served_meanwhile = True
            if agent == "exited" and healthy == "yes":
                healthy_at = now
                break
            time.sleep(1)
        journal = remote(inst, "sudo -n journalctl -b -u playground-agent --no-pager -o cat")
        restarts = int(remote(inst, "systemctl show -p NRestarts --value playground-agent").strip() or 0)
    finally:
        if patience is not None:
            remote(inst, "sudo -n rm -f /etc/playground/agent.env")
    return {"healthy_after_recovery_s": None if healthy_at is None else round(healthy_at - recovered, 1),
            "served_meanwhile": served_meanwhile, "agent_restarts": restarts,
            "retries": journal.count("metadata not readable yet")}


def measure(cycles_n: int = 10, units: tuple[str, ...] = KILLED) -> list[Row]:
    """units: the services killed (the smoke run kills one: tests/image/test_agent_boot.py kills them all)."""
    rows = []
    with bench_instance(NAME) as (inst, report):
        for unit in units:
            unit = postgres_cluster(inst) if unit == "POSTGRES_CLUSTER" else unit
            rows.append(Row(f"SIGKILL of {unit} main process to healthy (s)", [kill_back_seconds(inst, unit)],
                            AIM_BACK_S))
            rows.append(Row("  ... every process of its control group at once (s)",
                            [kill_back_seconds(inst, unit, "tree")], AIM_BACK_S))
        results = hostile_values(inst)
        for r in results:
            if not (r["handled"] and r["nothing_started"]):
                print(f"NOT HANDLED: {r['attribute']} ({r['why']}): {r['error'] or 'applied'}"
                      + ("" if r["nothing_started"] else "; something was restarted or started"))
        good = sum(r["handled"] and r["nothing_started"] for r in results)
        rows.append(Row(f"hostile metadata values refused in one line (empty: the default), nothing started "
                        f"(of {len(results)})", [float(good)], float(len(results)), higher_is_better=True))
        boot = failing_metadata_boot(inst, 30)
        inst = instance.load(inst.name)
        rows.append(Row("boot with metadata answering 500 for 30 s: seconds to healthy after it recovers",
                        [boot["healthy_after_recovery_s"] if boot["healthy_after_recovery_s"] is not None
                         else float("nan")]))
        rows.append(Row("  ... the last good config served while the agent waited (1 yes, 0 no)",
                        [float(boot["served_meanwhile"])], 1.0, higher_is_better=True))
        healthy, lost, seconds = cycles(inst, cycles_n)
        rows.append(Row(f"stop/start cycles healthy (of {cycles_n})", [float(healthy)], float(cycles_n),
                        higher_is_better=True))
        rows.append(Row(f"runs lost over {cycles_n} stop/start cycles (DAG + MLflow)", [float(lost)], 0.5))
        rows.append(Row("start to healthy in those cycles (s)", seconds, 60))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    print_rows(measure(args.cycles), "faults (issue 18)")


if __name__ == "__main__":
    main()
