"""What `playground upgrade` refuses before anything changes (cli/playground/upgrade.py), from two images'
manifests as `image build` writes them; the moves themselves are tests/image/test_upgrade.py's."""
from __future__ import annotations

import pytest
from playground import upgrade
from playground.errors import PlaygroundError


def manifest(name: str, built: str, airflow: str = "2.11.2", mlflow: str = "3.17.2", pg: str = "15.20") -> dict:
    return {"name": name, "built_at": built, "checksum": "sha256:" + name,
            "components": {"airflow": airflow, "mlflow": mlflow, "postgresql": pg, "python": "3.11.2"}}


OLD = manifest("playground-local-20261201-100000", "2026-12-01T10:00:00Z")


def test_a_newer_build_of_the_same_versions_is_allowed_and_says_so():
    new = manifest("playground-local-20261203-100000", "2026-12-03T10:00:00Z")
    assert upgrade.check("pg", OLD, new) == []
    assert upgrade.summary(OLD, new, []).endswith("(same versions, a newer build)")


def test_newer_airflow_and_mlflow_are_listed_as_the_change():
    new = manifest("n", "2026-12-03T10:00:00Z", airflow="2.12.0", mlflow="3.18.1")
    assert upgrade.check("pg", OLD, new) == ["airflow 2.11.2 -> 2.12.0", "mlflow 3.17.2 -> 3.18.1"]


@pytest.mark.parametrize("new, says", [
    (manifest("n", "2026-12-03T10:00:00Z", airflow="2.10.5"), "airflow 2.10.5, older than the 2.11.2 pg runs: a "
                                                             "downgrade is refused"),
    (manifest("n", "2026-12-03T10:00:00Z", mlflow="3.9.0"), "mlflow 3.9.0, older than the 3.17.2"),
    # 2.9 < 2.11 as versions, not as strings
    (manifest("n", "2026-12-03T10:00:00Z", airflow="2.9.3"), "a downgrade is refused"),
    (manifest("n", "2026-12-03T10:00:00Z", pg="16.4"), "PostgreSQL 16.4, pg runs 15.20: a change of major version "
                                                      "is refused"),
    (manifest("n", "2026-12-03T10:00:00Z", pg="13.16", airflow="2.11.2"), "a change of major version is refused"),
    (manifest("n", "2026-11-30T10:00:00Z"), "was built before playground-local-20261201-100000"),
])
def test_a_downgrade_or_a_postgresql_major_change_is_refused_naming_it(new, says):
    with pytest.raises(PlaygroundError) as err:
        upgrade.check("pg", OLD, new)
    assert says in str(err.value)
    assert str(err.value).startswith("--image: ")


def test_a_minor_postgresql_change_is_no_major_change():
    assert upgrade.check("pg", OLD, manifest("n", "2026-12-03T10:00:00Z", pg="15.21")) == []


def test_a_manifest_without_versions_is_refused_not_guessed():
    broken = {"name": "n", "built_at": "2026-12-03T10:00:00Z", "components": {"postgresql": "15.20"}}
    with pytest.raises(PlaygroundError, match="says no airflow version"):
        upgrade.check("pg", OLD, broken)


def test_an_image_that_says_no_postgresql_version_is_refused_not_taken_as_the_same():
    unlabelled = manifest("n", "2026-12-03T10:00:00Z")
    del unlabelled["components"]["postgresql"]
    with pytest.raises(PlaygroundError, match="n says no postgresql version"):
        upgrade.check("pg", OLD, unlabelled)


def test_version_tuples_compare_as_numbers():
    assert upgrade.version_tuple("15.20 (Debian 15.20-0+deb12u1)") == (15, 20)
    assert upgrade.version_tuple("2.9.3") < upgrade.version_tuple("2.11.2")
    assert upgrade.version_tuple("") == ()


@pytest.mark.parametrize("before", ["2.0.2", "2.6.3"])
def test_airflow_3_from_before_2_7_is_refused_naming_the_way_round(before):
    """Airflow 3 migrates a database of 2.7 or later only (its "Upgrading to Airflow 3")."""
    with pytest.raises(PlaygroundError) as err:
        upgrade.check("pg", manifest("old", "2026-12-01T10:00:00Z", airflow=before),
                      manifest("n", "2026-12-03T10:00:00Z", airflow="3.3.2"))
    assert str(err.value) == (f"--image: n has Airflow 3.3.2, and Airflow 3 migrates only from 2.7 or later; pg "
                              f"runs {before}: upgrade it to an image with the last Airflow 2 (2.11) first, then to "
                              "this one")


@pytest.mark.parametrize("before", ["2.7.0", "2.11.2"])
def test_airflow_3_from_2_7_on_is_an_upgrade(before):
    new = manifest("n", "2026-12-03T10:00:00Z", airflow="3.3.2")
    assert upgrade.check("pg", manifest("old", "2026-12-01T10:00:00Z", airflow=before), new) == [
        f"airflow {before} -> 3.3.2"]
