"""`playground schedule`: the nightly stop through the real Cloud Scheduler and Compute clients, against the
fake Google server (every request checked against the discovery documents), and the schedule arithmetic."""
from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from fakegoogle import PROJECT_NUMBER
from playground.errors import PlaygroundError
from playground.gce import compute, schedule_spec
from playground.main import app
from typer.testing import CliRunner

PROJECT = "my-team-project"
ZONE = "europe-west2-b"
STOP_URI = f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/pg-demo/stop"
JOBS = f"projects/{PROJECT}/locations/europe-west2/jobs"
WHERE = ["--project", PROJECT, "--zone", ZONE, "--name", "pg-demo"]


@pytest.fixture
def google(fake_google, monkeypatch, tmp_path):
    fake = fake_google
    fake.compute.add_image(PROJECT, "playground-seed", "playground-seed-20261124")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TZ", "Europe/London")
    monkeypatch.chdir(tmp_path)
    for var in ("PLAYGROUND_PROVIDER", "PLAYGROUND_PROJECT", "PLAYGROUND_ZONE", "PLAYGROUND_TIMEZONE",
                "PLAYGROUND_SCHEDULE_METHOD", "PLAYGROUND_COMPUTE_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    compute.launch(compute.GceSettings(project=PROJECT, zone=ZONE), "pg-demo", {}, lambda m: None)
    fake.requests.clear()
    return fake


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------ schedule arithmetic

@pytest.mark.parametrize("days,cron", [("mon-fri", "1-5"), ("mon,wed,fri", "1,3,5"), ("daily", "*"),
                                       ("sat-sun", "0,6"), ("fri-mon", "0,1,5,6"), ("MON-SUN", "*"),
                                       ("tue", "2")])
def test_days_become_cron_day_of_week(days, cron):
    assert schedule_spec.parse_days(days) == cron


@pytest.mark.parametrize("flags,field", [
    (("25:00", None, "mon-fri", "Europe/London"), "--stop"),
    (("21:00", "8am", "mon-fri", "Europe/London"), "--start"),
    (("21:00", "21:00", "mon-fri", "Europe/London"), "--start"),
    (("21:00", None, "weekdays", "Europe/London"), "--days"),
    (("21:00", None, "mon-fri", "Mars/Olympus"), "--tz"),
])
def test_bad_schedule_input_names_the_flag(flags, field):
    with pytest.raises(PlaygroundError) as err:
        schedule_spec.make_spec(*flags)
    msg = str(err.value)
    assert msg.startswith(field + ":") and ("expected" in msg or "must differ" in msg)


def test_next_runs_follow_the_time_zone_across_the_clock_change():
    spec = schedule_spec.make_spec("21:00", "08:00", "mon-fri", "Europe/London")
    assert spec.stop == "0 21 * * 1-5" and spec.start == "0 8 * * 1-5"
    friday = datetime(2026, 3, 27, 22, 0, tzinfo=ZoneInfo("Europe/London"))  # BST starts Sunday 29 March
    runs = schedule_spec.next_runs(spec.stop, spec.tz, 3, now=friday)
    assert [r.strftime("%a %d %H:%M %Z") for r in runs] == ["Mon 30 21:00 BST", "Tue 31 21:00 BST",
                                                            "Wed 01 21:00 BST"]
    assert runs[0].astimezone(ZoneInfo("UTC")).hour == 20
    saturday = schedule_spec.next_runs("30 7 * * 0,6", "Asia/Tokyo", 2, now=friday)
    assert [r.strftime("%a %H:%M") for r in saturday] == ["Sat 07:30", "Sun 07:30"]


# ------------------------------------------------------------------ Cloud Scheduler jobs

def test_schedule_creates_the_stop_and_start_jobs_with_the_exact_cron_zone_and_target(google):
    res = run("schedule", *WHERE, "--stop", "21:00", "--start", "08:00", "--days", "mon-fri",
              "--tz", "Europe/London")
    assert res.exit_code == 0, res.output
    order = [r["method"] for r in google.requests]
    assert order.index("projects.testIamPermissions") < order.index("projects.locations.jobs.create"), \
        "permissions are checked before anything is created"
    asked = google.calls("projects.testIamPermissions")[0]["body"]["permissions"]
    assert {"cloudscheduler.jobs.create", "iam.serviceAccounts.actAs"} <= set(asked)
    assert {c["params"]["servicesId"] for c in google.calls("services.get")} == \
        {"compute.googleapis.com", "cloudscheduler.googleapis.com"}
    stop = google.scheduler.jobs[f"{JOBS}/playground-pg-demo-stop"]
    start = google.scheduler.jobs[f"{JOBS}/playground-pg-demo-start"]
    assert (stop["schedule"], stop["timeZone"]) == ("0 21 * * 1-5", "Europe/London")
    assert (start["schedule"], start["timeZone"]) == ("0 8 * * 1-5", "Europe/London")
    assert stop["httpTarget"]["uri"] == STOP_URI
    assert start["httpTarget"]["uri"] == STOP_URI.replace("/stop", "/start")
    assert stop["httpTarget"]["httpMethod"] == "POST"
    assert stop["httpTarget"]["oauthToken"] == {
        "serviceAccountEmail": f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com",
        "scope": "https://www.googleapis.com/auth/cloud-platform"}
    assert "created: playground-pg-demo-stop" in res.output


SA = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
GRANT = (f"gcloud projects add-iam-policy-binding {PROJECT} --member=serviceAccount:{SA} "
         "--role=roles/compute.instanceAdmin.v1")


def test_the_jobs_account_without_stop_start_gets_a_warning_with_the_grant(google):
    """A fresh project's default compute account often has no role: the jobs would fail at 21:00."""
    res = run("schedule", *WHERE, "--stop", "21:00", "--tz", "Europe/London")
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert f"warning: {SA} has no role with compute.instances.stop/start in project {PROJECT}'s IAM policy" in out
    assert GRANT in out
    assert google.calls("projects.getIamPolicy")[0]["body"] == {"options": {"requestedPolicyVersion": 3}}


def test_the_jobs_account_with_a_role_that_may_stop_and_start_gets_no_warning(google):
    google.iam.bindings.append({"role": "roles/compute.instanceAdmin.v1", "members": [f"serviceAccount:{SA}"]})
    res = run("schedule", *WHERE, "--stop", "21:00", "--tz", "Europe/London")
    assert res.exit_code == 0 and "warning" not in res.output, res.output


def test_an_unreadable_iam_policy_gets_a_warning_with_the_grant(google):
    google.iam.policy_readable = False
    res = run("schedule", *WHERE, "--stop", "21:00", "--tz", "Europe/London")
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert f"warning: could not check that {SA} may stop and start the VM" in out and GRANT in out


def test_running_it_twice_leaves_the_same_jobs(google):
    args = ("schedule", *WHERE, "--stop", "21:00", "--start", "08:00", "--tz", "Europe/London")
    assert run(*args).exit_code == 0
    before = json.loads(json.dumps(google.scheduler.jobs))
    google.requests.clear()
    res = run(*args)
    assert res.exit_code == 0, res.output
    assert "unchanged: playground-pg-demo-stop" in res.output and "unchanged: playground-pg-demo-start" in res.output
    assert not google.calls("projects.locations.jobs.create") and not google.calls("projects.locations.jobs.patch")
    assert {n: j["schedule"] for n, j in google.scheduler.jobs.items()} == \
        {n: j["schedule"] for n, j in before.items()}


def test_a_new_time_updates_the_job_and_dropping_start_removes_it(google):
    assert run("schedule", *WHERE, "--stop", "21:00", "--start", "08:00", "--tz", "Europe/London").exit_code == 0
    res = run("schedule", *WHERE, "--stop", "22:30", "--days", "daily", "--tz", "America/New_York")
    assert res.exit_code == 0, res.output
    patch = google.calls("projects.locations.jobs.patch")[0]
    assert set(patch["query"]["updateMask"][0].split(",")) == {"description", "schedule", "timeZone", "httpTarget"}
    assert list(google.scheduler.jobs) == [f"{JOBS}/playground-pg-demo-stop"]
    job = google.scheduler.jobs[f"{JOBS}/playground-pg-demo-stop"]
    assert (job["schedule"], job["timeZone"]) == ("30 22 * * *", "America/New_York")
    assert "updated: playground-pg-demo-stop" in res.output and "removed: playground-pg-demo-start" in res.output


def test_show_prints_the_next_runs_in_the_users_time_zone(google, monkeypatch):
    assert run("schedule", *WHERE, "--stop", "21:00", "--start", "08:00", "--tz", "Europe/London").exit_code == 0
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    res = run("schedule", "show", *WHERE, "--json")
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown["your_time_zone"] == "Asia/Tokyo" and shown["method"] == "scheduler"
    stop = next(e for e in shown["entries"] if e["action"] == "stop")
    assert stop["cron"] == "0 21 * * 1-5" and stop["time_zone"] == "Europe/London" and stop["target"] == STOP_URI
    runs = [datetime.fromisoformat(r) for r in stop["next_runs"]]
    assert len(runs) == 3 and all(r.utcoffset().total_seconds() == 9 * 3600 for r in runs)
    assert all(r.astimezone(ZoneInfo("Europe/London")).strftime("%H:%M") == "21:00" for r in runs)
    table = run("schedule", "show", *WHERE)
    assert table.exit_code == 0 and "next runs (Asia/Tokyo)" in flat(table.stdout)


def test_remove_deletes_the_jobs_and_show_then_says_there_is_none(google):
    assert run("schedule", *WHERE, "--stop", "21:00", "--start", "08:00", "--tz", "Europe/London").exit_code == 0
    res = run("schedule", "remove", *WHERE)
    assert res.exit_code == 0 and not google.scheduler.jobs
    assert f"removed {JOBS}/playground-pg-demo-stop" in flat(res.output)
    assert "nothing to remove" in run("schedule", "remove", *WHERE).output
    none = run("schedule", "show", *WHERE)
    assert none.exit_code == 1 and "no scheduler schedule for pg-demo" in flat(none.output)


# ------------------------------------------------------------------ what is missing, said before anything is made

def test_a_disabled_api_is_named_with_the_command_that_enables_it(google):
    google.iam.disabled.add("cloudscheduler.googleapis.com")
    res = run("schedule", *WHERE, "--tz", "Europe/London")
    assert res.exit_code == 1
    assert ("error: the Cloud Scheduler API is not enabled in project my-team-project: gcloud services enable "
            "cloudscheduler.googleapis.com --project my-team-project") in flat(res.output)
    assert not google.scheduler.jobs and not google.calls("projects.locations.jobs.create")


def test_a_missing_permission_is_named_with_the_role_that_grants_it(google):
    google.iam.denied.update({"cloudscheduler.jobs.create", "iam.serviceAccounts.actAs"})
    res = run("schedule", *WHERE, "--tz", "Europe/London")
    assert res.exit_code == 1
    out = flat(res.output)
    assert "permission cloudscheduler.jobs.create missing in project my-team-project" in out
    assert "also missing: iam.serviceAccounts.actAs" in out and "--role=roles/cloudscheduler.admin" in out
    assert not google.scheduler.jobs


def test_an_api_error_at_job_time_is_one_line(google):
    google.scheduler.fail_next["projects.locations.jobs.get"] = "api-disabled"
    res = run("schedule", *WHERE, "--tz", "Europe/London", "--no-check")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "gcloud services enable cloudscheduler.googleapis.com" in flat(res.output)
    assert not google.scheduler.jobs


def test_no_such_instance_and_bad_flags_make_nothing(google):
    res = run("schedule", "--project", PROJECT, "--zone", ZONE, "--name", "nope", "--tz", "Europe/London")
    assert res.exit_code == 1 and "no instance nope in project my-team-project" in flat(res.output)
    google.requests.clear()
    for bad, field in ((("--stop", "9pm"), "--stop"), (("--days", "weekdays"), "--days"),
                       (("--tz", "Mars/Olympus"), "--tz"), (("--method", "cron"), "--method")):
        res = run("schedule", *WHERE, "--tz", "Europe/London", *bad)
        assert res.exit_code == 1 and f"error: {field}" in flat(res.output), res.output
    assert not google.requests, "bad input is refused before any call"
    assert not google.scheduler.jobs


# ------------------------------------------------------------------ the resource-policy method

def test_resource_policy_is_created_attached_updated_and_removed(google):
    policy = f"projects/{PROJECT}/regions/europe-west2/resourcePolicies/playground-pg-demo-schedule"
    args = ("schedule", *WHERE, "--method", "resource-policy", "--stop", "21:00", "--start", "08:00",
            "--tz", "Europe/London")
    res = run(*args)
    assert res.exit_code == 0, res.output
    isp = google.compute.policies[policy]["instanceSchedulePolicy"]
    assert isp == {"timeZone": "Europe/London", "vmStopSchedule": {"schedule": "0 21 * * 1-5"},
                   "vmStartSchedule": {"schedule": "0 8 * * 1-5"}}
    inst = google.compute.instances[(PROJECT, ZONE, "pg-demo")]
    assert inst["resourcePolicies"] == [f"https://compute.googleapis.com/compute/v1/{policy}"]
    assert google.calls("regionOperations.wait"), "the region operation is waited on with our own client"
    assert not google.calls("projects.locations.jobs.create")

    google.requests.clear()
    again = run(*args)
    assert "unchanged: playground-pg-demo-schedule" in again.output
    assert not google.calls("resourcePolicies.insert") and not google.calls("instances.addResourcePolicies")

    assert run("schedule", *WHERE, "--method", "resource-policy", "--stop", "20:00", "--tz",
               "Europe/London").exit_code == 0
    assert google.compute.policies[policy]["instanceSchedulePolicy"]["vmStopSchedule"] == {"schedule":
                                                                                          "0 20 * * 1-5"}
    shown = json.loads(run("schedule", "show", *WHERE, "--method", "resource-policy", "--json").stdout)
    assert [e["action"] for e in shown["entries"]] == ["stop"]

    res = run("schedule", "remove", *WHERE, "--method", "resource-policy")
    assert res.exit_code == 0, res.output
    assert not google.compute.policies and inst["resourcePolicies"] == []


def test_status_shows_the_next_stop_and_start_in_the_users_time_zone(google, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcloud and no key: the machine itself is unreachable
    assert run("schedule", *WHERE, "--stop", "21:00", "--start", "08:00", "--tz", "Europe/London").exit_code == 0
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    res = run("status", "--project", PROJECT, "--zone", ZONE, "--json")
    row = next(r for r in json.loads(res.stdout)["instances"] if r["name"] == "pg-demo")
    # November: London is UTC+0, Tokyo UTC+9.
    assert row["schedule"]["next_stop"].endswith("06:00 JST"), row["schedule"]
    assert row["schedule"]["next_start"].endswith("17:00 JST"), row["schedule"]
    assert run("schedule", "remove", *WHERE).exit_code == 0
    res = run("status", "--project", PROJECT, "--zone", ZONE, "--json")
    row = next(r for r in json.loads(res.stdout)["instances"] if r["name"] == "pg-demo")
    assert row["schedule"]["next_stop"] is None and "no schedule" in row["schedule"]["note"]


def test_google_out_of_reach_is_one_line_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYGROUND_GOOGLE_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("PLAYGROUND_GOOGLE_ANONYMOUS", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for args, api in ((("list", "--project", PROJECT), "compute"),
                      (("schedule", "show", *WHERE), "cloudscheduler"),
                      (("schedule", *WHERE, "--tz", "Europe/London"), "serviceusage"),
                      (("stop", "--provider", "gce", *WHERE), "compute")):
        res = run(*args)
        assert res.exit_code == 1, res.output
        assert f"error: cannot reach the {api} API at http://127.0.0.1:9" in flat(res.output), res.output
