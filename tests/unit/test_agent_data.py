"""The data volume's pieces that need no mount (agent/playground_agent/data.py): the PostgreSQL major check
made before PostgreSQL starts, and the first copy of an image folder onto the volume. Mounting and binding
run for real on an instance: tests/image/test_upgrade.py."""
from __future__ import annotations

import json
import os

import pytest
from playground_agent import data


@pytest.fixture
def volume(tmp_path, monkeypatch):
    manifest = tmp_path / "image-manifest.json"
    manifest.write_text(json.dumps({"components": {"postgresql": "15.20"}}))
    monkeypatch.setattr(data.paths, "MANIFEST", str(manifest))
    vol = tmp_path / "volume"
    vol.mkdir()
    return vol


def cluster(vol, major: str) -> None:
    (vol / "postgresql" / major / "main").mkdir(parents=True)
    (vol / "postgresql" / major / "main" / "PG_VERSION").write_text(major + "\n")


def test_a_cluster_of_the_images_own_major_is_taken(volume):
    cluster(volume, "15")
    data.check_postgres(str(volume))


def test_a_fresh_volume_has_no_cluster_yet_and_is_taken(volume):
    assert data.volume_pg_majors(str(volume)) == []
    data.check_postgres(str(volume))


def test_a_cluster_of_another_major_is_refused_before_postgresql_sees_it(volume):
    cluster(volume, "13")
    with pytest.raises(data.DataError) as err:
        data.check_postgres(str(volume))
    assert "holds a PostgreSQL 13 cluster and this image has PostgreSQL 15" in str(err.value)
    assert "back it up and restore it onto a new playground" in str(err.value)


def test_the_first_copy_is_the_image_folder_whole_and_a_cut_short_one_is_made_again(tmp_path, monkeypatch):
    src = tmp_path / "image" / "secrets"
    src.mkdir(parents=True)
    (src / "fernet").write_text("k")
    os.chmod(src, 0o700)
    dest = tmp_path / "volume" / "secrets"
    dest.parent.mkdir()
    (tmp_path / "volume" / "secrets.seeding").mkdir()  # a boot cut short left this
    (tmp_path / "volume" / "secrets.seeding" / "half").write_text("x")
    data._seed(str(src), str(dest), "root")
    assert sorted(os.listdir(dest)) == ["fernet"]
    assert os.stat(dest).st_mode & 0o777 == 0o700, "cp -a keeps the mode (and owner)"
    assert not os.path.exists(str(dest) + ".seeding")


def test_a_folder_the_image_lacks_starts_empty_owned_by_its_user(tmp_path):
    dest = tmp_path / "dags"
    data._seed(str(tmp_path / "absent"), str(dest), "root")
    assert os.listdir(dest) == [] and os.stat(dest).st_uid == 0


def test_every_bound_folder_is_one_the_team_writes_and_none_is_the_image_itself():
    targets = [t for _, t, _ in data.FOLDERS]
    assert "/var/lib/postgresql" in targets and "/var/lib/playground/secrets" in targets
    assert not any(t.startswith(("/opt", "/usr", "/etc")) for t in targets), "the image's code stays the image's"
    assert len({sub for sub, _, _ in data.FOLDERS}) == len(data.FOLDERS)


def test_the_images_own_dag_files_follow_the_image_and_the_teams_stay(tmp_path):
    image, vol, record = tmp_path / "image", tmp_path / "dags", str(tmp_path / "image-dags.json")
    image.mkdir()
    vol.mkdir()
    for name, text in {"demo.py": "v1", "changed.py": "v1", "removed.py": "v1"}.items():
        (image / name).write_text(text)
        (vol / name).write_text(text)
    data.sync_image_dags(str(image), str(vol), record, print)  # the first image: nothing to do but record
    (vol / "changed.py").write_text("the team's edit")
    (vol / "removed.py").unlink()
    (vol / "team.py").write_text("the team's own")
    for name in ("demo.py", "changed.py", "removed.py"):
        (image / name).write_text("v2")
    (image / "added.py").write_text("v2")

    changed = data.sync_image_dags(str(image), str(vol), record, print)  # a newer image

    assert changed == ["added.py", "demo.py"]
    got = {p.name: p.read_text() for p in vol.iterdir()}
    assert got == {"demo.py": "v2", "added.py": "v2", "changed.py": "the team's edit", "team.py": "the team's own"}
    assert data.sync_image_dags(str(image), str(vol), record, print) == [], "once is enough"
