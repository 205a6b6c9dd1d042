"""Old local images are removed after a build, but never one a local instance runs on."""
from __future__ import annotations

import json

from playground.image import local_build
from playground.local import instance


def test_keeps_the_newest_and_every_image_an_instance_uses(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path))
    root = tmp_path / "images" / "local"
    names = [f"playground-local-2026010{i}-000000" for i in range(1, 6)]
    for name in names:
        (root / name / "rootfs").mkdir(parents=True)
        (root / name / "manifest.json").write_text("{}")
        (root / f"{name}.log").write_text("build log")
    (root / "playground-local-20260109-000000.building").mkdir()  # a build under way: not an image
    used = instance.Instance(name="keepme", project="playground-test", profile="local", image=str(root / names[0]),
                             slot=1, instance_id="1", created_at=0.0)
    used.save()
    assert json.loads((used.dir / "instance.json").read_text())["image"].endswith(names[0])

    removed = local_build.prune_images("local", keep=2)

    assert removed == names[1:3]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        names[0], names[3], names[4], "playground-local-20260109-000000.building"]
    assert not (root / f"{names[1]}.log").exists() and (root / f"{names[0]}.log").exists()
