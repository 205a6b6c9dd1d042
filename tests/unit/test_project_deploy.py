"""A project folder as deploy reads it (astro's layout), its settings file checked field by field, the plan
that makes a DAG folder equal it, and the dags bucket synced for real (gcp-storage-emulator, through
google-cloud-storage, as `gsutil rsync -d` would). Deploying onto a booted instance is
tests/image/test_project.py's."""
from __future__ import annotations

import json
import urllib.request

import pytest
from playground import deploy, project
from playground.errors import PlaygroundError
from playground.gce.google import storage_client
from test_image_push import PROJECT, storage  # noqa: F401  (the emulator fixture)

# `astro dev init`'s template: blank rows, which astro skips.
ASTRO_TEMPLATE = """
airflow:
  connections:
    - conn_id:
      conn_type:
      conn_host:
      conn_schema:
      conn_login:
      conn_password:
      conn_port:
      conn_extra:
        example_extra_field: example-value
  pools:
    - pool_name:
      pool_slot:
      pool_description:
  variables:
    - variable_name:
      variable_value:
"""

GOOD = """
airflow:
  connections:
    - conn_id: shop_api
      conn_type: http
      conn_host: shop.internal
      conn_login: svc
      conn_password: s3cret-value
      conn_port: 8443
      conn_extra: {"timeout": 5}
  variables:
    - variable_name: region
      variable_value: eu
    - variable_name: thresholds
      variable_value: {"low": 1}
  pools:
    - pool_name: api
      pool_slot: 2
"""


def make(tmp_path, files: dict[str, str]):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_dags_folder_is_dags_when_there_is_one_and_leaves_out_what_is_not_a_dag_file(tmp_path):
    root = make(tmp_path, {"dags/a.py": "x", "dags/sub/b.py": "y", "dags/.airflowignore": "old_.*",
                           "dags/__pycache__/a.cpython-311.pyc": "", "dags/.hidden.py": "", "dags/c.pyc": "",
                           "README.md": "not a DAG", "requirements.txt": "pandas\n"})
    proj = project.load(root)
    assert sorted(proj.files) == [".airflowignore", "a.py", "sub/b.py"]
    assert proj.settings is None


def test_without_dags_the_folder_itself_holds_them_but_not_the_project_files(tmp_path):
    root = make(tmp_path, {"a.py": "x", "requirements.txt": "pandas\n", "airflow_settings.yaml": GOOD})
    proj = project.load(root)
    assert sorted(proj.files) == ["a.py"]
    conns = proj.settings["connections"]
    assert conns == [{"conn_id": "shop_api", "conn_type": "http", "host": "shop.internal", "schema": None,
                      "login": "svc", "password": "s3cret-value", "port": 8443, "extra": {"timeout": 5}}]
    assert proj.settings["variables"] == [{"key": "region", "value": "eu"},
                                          {"key": "thresholds", "value": {"low": 1}}]
    assert proj.settings["pools"] == [{"name": "api", "slots": 2, "description": ""}]


def test_astro_s_blank_template_applies_nothing(tmp_path):
    (tmp_path / "airflow_settings.yaml").write_text(ASTRO_TEMPLATE)
    assert project.read_settings(tmp_path / "airflow_settings.yaml") == {"connections": [], "variables": [],
                                                                          "pools": []}


@pytest.mark.parametrize("text, expected", [
    ("airflow: [", "airflow_settings.yaml line 1: not valid YAML"),
    ("connections: []", "expected one top-level key `airflow:`"),
    ("airflow:\n  users: []", "airflow.users: expected connections, variables or pools"),
    ("airflow:\n  connections: {}", "airflow.connections: expected a list"),
    ("airflow:\n  connections:\n    - conn_id: a\n      conn_type: http\n      conn_port: abc",
     "airflow.connections[0].conn_port: expected a port number 1-65535 (got 'abc')"),
    ("airflow:\n  connections:\n    - conn_id: a\n      conn_typ: http",
     "airflow.connections[0].conn_typ: unknown field"),
    ("airflow:\n  connections:\n    - conn_id: a", "airflow.connections[0].conn_type: expected a connection type"),
    ("airflow:\n  connections:\n    - conn_id: a b\n      conn_type: http",
     "airflow.connections[0].conn_id: expected 1-250 of A-Z a-z 0-9 _ . - (got 'a b')"),
    ("airflow:\n  variables:\n    - {variable_name: a, variable_value: 1}\n    - {variable_name: a, variable_value: 2}",
     "airflow.variables[1].variable_name: 'a' appears twice"),
    ("airflow:\n  variables:\n    - variable_name: a", "airflow.variables[0].variable_value: expected a value"),
    ("airflow:\n  pools:\n    - {pool_name: p, pool_slot: -1}", "airflow.pools[0].pool_slot: expected a number of"),
    ("airflow:\n  connections:\n    - {conn_id: a, conn_type: http, conn_extra: 'not json'}",
     "airflow.connections[0].conn_extra: expected a mapping or a JSON object"),
])
def test_a_bad_settings_file_is_one_line_naming_the_field(tmp_path, text, expected):
    (tmp_path / "airflow_settings.yaml").write_text(text)
    with pytest.raises(PlaygroundError) as err:
        project.load(tmp_path)
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert "s3cret" not in str(err.value)


def test_links_and_huge_files_are_refused(tmp_path):
    make(tmp_path, {"dags/a.py": "x"})
    (tmp_path / "dags" / "link.py").symlink_to(tmp_path / "dags" / "a.py")
    with pytest.raises(PlaygroundError, match="link.py: a symbolic link"):
        project.load(tmp_path)
    (tmp_path / "dags" / "link.py").unlink()
    with open(tmp_path / "dags" / "data.csv", "wb") as fh:
        fh.truncate(project.MAX_FILE_BYTES + 1)
    with pytest.raises(PlaygroundError, match="data.csv: 10 MiB; expected DAG files of at most 10 MiB"):
        project.load(tmp_path)
    with pytest.raises(PlaygroundError, match="expected a folder"):
        project.load(tmp_path / "nowhere")


def test_plan_makes_the_remote_folder_equal_the_local_one():
    local = {"a.py": "1", "b.py": "2", "new.py": "3"}
    remote = {"a.py": "1", "b.py": "old", "example.py": "9"}
    assert deploy.plan(local, remote) == (["new.py"], ["b.py"], ["example.py"], 1)
    assert deploy.plan(local, local) == ([], [], [], 3)


def bucket_objects(endpoint: str, bucket: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{endpoint}/storage/v1/b/{bucket}/o") as resp:
        return {o["name"]: o.get("md5Hash") for o in json.load(resp).get("items", [])}


def test_the_dags_bucket_is_synced_like_gsutil_rsync_d(tmp_path, storage, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PLAYGROUND_GOOGLE_ANONYMOUS", "1")
    client = storage_client(PROJECT)
    client.create_bucket("team-dags")
    client.bucket("team-dags").blob("dags/stale.py").upload_from_string("old")
    client.bucket("team-dags").blob("logs/keep.log").upload_from_string("not under dags/")
    root = make(tmp_path / "proj", {f"dags/d{i}.py": f"# dag {i}\n" for i in range(5)})
    said: list[str] = []

    assert deploy.sync_bucket(client, "team-dags", project.load(root), said.append) == (
        [f"d{i}.py" for i in range(5)], [], ["stale.py"], 0)
    held = bucket_objects(storage, "team-dags")
    assert sorted(held) == [f"dags/d{i}.py" for i in range(5)] + ["logs/keep.log"]
    assert held["dags/d0.py"] == deploy.md5_b64(root / "dags" / "d0.py")
    assert any("uploading d0.py (1/5)" in m for m in said)

    assert deploy.sync_bucket(client, "team-dags", project.load(root), said.append) == ([], [], [], 5)
    (root / "dags" / "d1.py").write_text("# changed\n")
    (root / "dags" / "d4.py").unlink()
    assert deploy.sync_bucket(client, "team-dags", project.load(root), said.append) == ([], ["d1.py"], ["d4.py"], 3)
    assert sorted(bucket_objects(storage, "team-dags")) == [f"dags/d{i}.py" for i in range(4)] + ["logs/keep.log"]


def test_requirements_are_names_and_specifiers_only(tmp_path):
    (tmp_path / "requirements.txt").write_text("# a comment\nhumanize>=4  # why\ntoolz\nrequests[socks]==2.32.3\n"
                                               "emoji ~= 2.0, != 2.1; python_version >= '3.9'\n")
    proj = project.load(tmp_path)
    assert project.requirement_names(proj.requirements) == ["humanize", "toolz", "requests", "emoji"]
    for line in ("-r other.txt", "--index-url http://x", "git+https://example/x.git", "./wheels/x.whl", "a b"):
        (tmp_path / "requirements.txt").write_text("toolz\n" + line + "\n")
        with pytest.raises(PlaygroundError, match=r"requirements.txt line 2: expected NAME\[extras\]\[specifier\]"):
            project.load(tmp_path)


def test_platform_tags_are_every_manylinux_the_machine_s_glibc_takes():
    tags = deploy.platform_tags("2.36", "x86_64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags and tags[-1] == "manylinux1_x86_64"
    assert "manylinux2014_x86_64" in tags and "manylinux_2_37_x86_64" not in tags
    assert "manylinux2014_x86_64" not in deploy.platform_tags("2.12", "x86_64")


def test_a_wheel_already_in_the_venv_is_not_sent():
    assert deploy.wheel_key("charset_normalizer-3.5.2-cp311-cp311-manylinux2014_x86_64.whl") == \
        "charset-normalizer==3.5.2"
    assert deploy.wheel_key("Humanize-4.17.0-py3-none-any.whl") == "humanize==4.17.0"


def test_the_agent_writes_only_inside_the_dag_folder(tmp_path):
    """The DAG folder belongs to the airflow user (tasks run as it): a path or a link it planted must not
    steer root's writes elsewhere."""
    from playground_agent import project as agent_project

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "planted").symlink_to(tmp_path / "etc", target_is_directory=True)
    (tmp_path / "etc").mkdir()
    for rel in ("../x.py", "/etc/x.py", "a/../../x.py", ".git/config", "a//b.py", ""):
        with pytest.raises(agent_project.ProjectError, match="expected a relative path inside the DAG folder"):
            agent_project.safe_rel(rel)
    assert agent_project.safe_rel(".airflowignore") == ".airflowignore"
    with pytest.raises(agent_project.ProjectError, match="a link in the DAG folder leads outside it"):
        agent_project._inside(str(dags), "planted/passwd")
    assert agent_project._inside(str(dags), "sub/a.py") == str(dags / "sub" / "a.py")


def test_a_requirement_that_conflicts_with_airflow_s_pins_is_one_line_naming_it(tmp_path):
    """Resolved with this machine's own pip and index (as deploy does), the machine's venv as constraints."""
    machine = {"python": "3.11.2", "glibc": "2.36", "machine": "x86_64", "venv": ["requests==2.32.3"]}
    with pytest.raises(PlaygroundError) as err:
        deploy.resolve("requests==2.0.0\n", machine, tmp_path, lambda s: None)
    assert str(err.value).startswith("requirements.txt: Cannot install requests==2.0.0") and "\n" not in str(err.value)
