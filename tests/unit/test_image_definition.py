"""The image definition: Packer template per profile, scripts, units, lock files."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from playground.image import gce_build, local_build, packer
from support import REPO

PACKER = REPO / "packer"
PROFILES = sorted(p.name.removesuffix(".pkrvars.hcl") for p in (PACKER / "profiles").glob("*.pkrvars.hcl"))
# Binaries the image provides; the host running the tests does not have them.
IMAGE_BINARIES = ("/opt/airflow/bin/airflow", "/opt/airflow/bin/python", "/usr/local/bin/playground-agent",
                  "/bin/fusermount", "/usr/bin/redis-server", "/usr/bin/socat")  # the last two: 25-redis.sh


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (.ci/run installs it)")


def test_profiles_are_the_designed_ones_and_each_knows_where_it_is_built():
    from playground.image import profiles

    assert PROFILES == ["current", "local", "seed", "seed-local"]
    assert profiles.local_profiles() == ["local", "seed-local"]
    assert profiles.gce_profiles() == ["current", "seed"]
    # seed-local is the seed's Airflow and MLflow on the Debian release this machine can boot.
    seed, seed_local = profiles.variables("seed"), profiles.variables("seed-local")
    assert (seed_local["airflow_version"], seed_local["mlflow_version"]) == (seed["airflow_version"],
                                                                              seed["mlflow_version"])
    assert profiles.debian_suite("seed-local") == "bullseye"


@pytest.mark.parametrize("profile", PROFILES)
def test_packer_validate(profile, tmp_path):
    """The exact command lines the CLI runs validate for every profile: the local source (as
    `image build` calls it) and the googlecompute source (as `image build --gce` calls it)."""
    need("packer")
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    packer.validate("local", profile, local_build.packer_variables(2222, key, "20260101-000000"))
    packer.validate("gce", profile, gce_build.variables("my-team-project", "europe-west2-b", "20260101-000000"))


def test_packer_fmt():
    need("packer")
    for folder in ("template", "profiles", "plugins"):
        proc = subprocess.run(["packer", "fmt", "-check", str(PACKER / folder)], capture_output=True, text=True)
        assert proc.returncode == 0, f"packer fmt -check {folder}: {proc.stdout}"


def test_required_plugins_live_outside_the_template():
    assert "required_plugins" in (PACKER / "plugins" / "required_plugins.pkr.hcl").read_text()
    for f in (PACKER / "template").glob("*.hcl"):
        assert "required_plugins" not in f.read_text(), f


def test_shellcheck():
    need("shellcheck")
    scripts = sorted(str(p) for p in (PACKER / "scripts").glob("*.sh")) + [str(REPO / ".ci" / "run")]
    scripts += [str(REPO / "scripts" / name) for name in ("install.sh", "demo", "test")]
    proc = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout


def test_units_verify():
    need("systemd-analyze")
    units = sorted(str(p) for p in (REPO / "units").iterdir())
    proc = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.strip() and not any(f"Command {b} is not executable" in line for b in IMAGE_BINARIES)]
    assert problems == []


def test_web_units_bind_loopback_and_gcsfuse_is_not_sandboxed():
    mount = (REPO / "units" / "playground-bucket-mount.service").read_text()
    for option in ("ProtectSystem", "PrivateTmp", "ProtectHome", "PrivateMounts"):
        assert not re.search(rf"^{option}=", mount, re.M), option
    for unit in ("airflow-webserver.service", "airflow-scheduler@.service", "mlflow-server.service"):
        text = (REPO / "units" / unit).read_text()
        assert re.search(r"^Restart=(on-failure|always)$", text, re.M), unit
        assert re.search(r"^User=(airflow|mlflow)$", text, re.M), unit
    # The scheduler comes back even after a clean exit: Airflow 2.0's exits 0 when its database is lost.
    assert re.search(r"^Restart=always$", (REPO / "units" / "airflow-scheduler@.service").read_text(), re.M)


@pytest.mark.parametrize("unit", ["airflow-webserver.service", "airflow-scheduler@.service",
                                  "airflow-triggerer.service", "mlflow-server.service", "playground-lineage.service",
                                  "playground-bucket-sync.service", "playground-autostop.service",
                                  "cloud-sql-proxy.service"])
def test_service_units_are_sandboxed_to_an_exposure_of_5_or_less(unit):
    """Issue 18's aim, as systemd itself scores the unit file the image installs."""
    need("systemd-analyze")
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(REPO / "units" / unit)],
                          capture_output=True, text=True)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout).group(1))
    assert score <= 5.0, proc.stdout


# Debian 11's Python is 3.9.2, said in full: cryptography's wheels exclude 3.9.0, which "3.9" would mean.
LOCK_PYTHON = {"local": "3.11", "current": "3.11", "seed": "3.8", "seed-local": "3.9.2"}
# glibc of each profile's OS: wheels up to this manylinux level install there. uv's target triple takes
# every older manylinux tag with it, and names only some levels (2_17, then 2_28 and up): Ubuntu 18.04's
# glibc 2.27 is asked as 2_17, which is stricter (a wheel tagged 2_24 alone would fail the check).
LOCK_GLIBC = {"local": 36, "current": 36, "seed": 27, "seed-local": 31}
UV_MANYLINUX = (17, *range(28, 41))
# Pins published only as source: their metadata is prepared (small, pure Python).
# Everything else must come as a wheel, so nothing is compiled during the check.
SDIST_ONLY = {
    ("local", "airflow"): "python-nvd3",
    ("current", "airflow"): "python-nvd3",
    ("seed", "airflow"): "flask-jwt-extended,flask-login,pyrsistent,python-nvd3,python-slugify,setproctitle,unicodecsv",
    ("seed-local", "airflow"): "flask-jwt-extended,flask-login,pyrsistent,python-nvd3,python-slugify,setproctitle,"
                               "unicodecsv",
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("venv", ["airflow", "mlflow"])
def test_lock_resolves_for_the_profile_python(profile, venv, tmp_path):
    """Every pin of the lock exists on the package index for the profile's Python and glibc, as a wheel
    (or, for the few sdist-only pins, as source). uv answers this from the index's metadata in about a
    second; pip's dry run downloaded whole wheels (about 35 s a lock)."""
    lock = PACKER / "locks" / profile / f"{venv}.txt"
    uv = shutil.which("uv", path=str(REPO / ".venv" / "bin")) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (scripts/install.sh test installs it)")
    no_binary = [arg for name in SDIST_ONLY.get((profile, venv), "").split(",") if name
                 for arg in ("--no-binary", name)]
    proc = subprocess.run(
        [uv, "pip", "install", "--dry-run", "--no-deps", "--no-config", "--only-binary", ":all:", *no_binary,
         "--python-version", LOCK_PYTHON[profile],
         "--python-platform", f"x86_64-manylinux_2_{max(m for m in UV_MANYLINUX if m <= LOCK_GLIBC[profile])}",
         "--target", str(tmp_path / "t"), "-r", str(lock)],
        capture_output=True, text=True, timeout=600, env=_uv_env())
    assert proc.returncode == 0, proc.stderr[-2000:]


def _uv_env():
    """The host's pip index and CA bundle, as uv reads them (uv does not read pip's configuration)."""
    import os

    from playground.image import hostinputs

    env = dict(os.environ)
    index = hostinputs.pip_index_url()
    if index:
        env["UV_INDEX_URL"] = index
    if os.environ.get("PIP_CERT") and not env.get("SSL_CERT_FILE"):
        env["SSL_CERT_FILE"] = os.environ["PIP_CERT"]
    return env


def test_lock_pins_the_profile_versions():
    for profile in PROFILES:
        variables = dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', (PACKER / "profiles" / f"{profile}.pkrvars.hcl")
                                    .read_text(), re.M))
        airflow = (PACKER / "locks" / profile / "airflow.txt").read_text()
        mlflow = (PACKER / "locks" / profile / "mlflow.txt").read_text()
        assert f"apache-airflow=={variables['airflow_version']}\n" in airflow, profile
        assert f"mlflow=={variables['mlflow_version']}\n" in mlflow, profile
        assert "mlflow-skinny==" in airflow and "psycopg2" in airflow, profile


def test_template_runs_every_numbered_script_in_order():
    """`image build` counts its progress in these scripts: the template must run exactly them, in order."""
    listed = re.findall(r'"\$\{path\.root\}/\.\./scripts/(\d\d-[\w-]+\.sh)"',
                        (PACKER / "template" / "build.pkr.hcl").read_text())
    assert listed == packer.scripts()
