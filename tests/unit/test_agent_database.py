"""When the agent migrates Airflow's database and creates the admin user (agent/playground_agent/database.py),
decided from the database's own Alembic tables against what the image build recorded. The SQL runs against a
stand-in answering as psql would; on a real image: tests/image/test_agent_boot.py."""
from __future__ import annotations

import json

import pytest
from playground_agent import database


class Db:
    """psql's answers for a database holding `tables` (name -> revision) and `users`."""

    def __init__(self, tables: dict[str, str], users: tuple[str, ...] = ()) -> None:
        self.tables = tables
        self.users = users
        self.ran: list[list[str]] = []

    def sql(self, sql: str, database: str = "airflow") -> str:
        if "information_schema.tables" in sql:
            return " ".join(t for t in self.tables if "'%s'" % t in sql)
        if sql.startswith("SELECT string_agg(version_num"):
            return self.tables[sql.rsplit(" ", 1)[1]]
        if "to_regclass('public.ab_user')" in sql:
            return "t" if self.users is not None else "f"
        if "FROM ab_user WHERE username" in sql:
            return "1" if sql.split("'")[1] in self.users else ""
        raise AssertionError("unexpected SQL: " + sql)


@pytest.fixture
def baked(tmp_path, monkeypatch):
    path = tmp_path / "airflow-database.json"
    monkeypatch.setattr(database, "BAKED", str(path))

    def write(revisions):
        path.write_text(json.dumps({"airflow": "2.11.2", "revisions": revisions}))
    return write


def use(monkeypatch, db: Db) -> Db:
    monkeypatch.setattr(database, "_sql", db.sql)
    monkeypatch.setattr(database, "airflow", lambda args, env, what, secret_input=None: db.ran.append(args) or "")
    return db


def test_a_database_at_the_images_revisions_is_not_migrated(baked, monkeypatch):
    baked({"alembic_version": "5f2621c13b39"})
    db = use(monkeypatch, Db({"alembic_version": "5f2621c13b39"}))
    assert database.migrate({}, lambda m: None) is False and db.ran == []


@pytest.mark.parametrize("tables", [
    {},  # an empty database (a volume made before the image baked one)
    {"alembic_version": "686269002441"},  # an older Airflow's schema (a restored backup, an upgrade)
    {"alembic_version": "5f2621c13b39", "alembic_version_fab": "6709f7a774b9"},  # a table the image lacks
])
def test_any_other_database_is_migrated_with_the_versions_command(baked, monkeypatch, tables):
    baked({"alembic_version": "5f2621c13b39"})
    db = use(monkeypatch, Db(tables))
    logged = []
    assert database.migrate({}, logged.append) is True
    assert db.ran[0][:1] == ["db"] and "database migration" in logged[0]


def test_an_image_without_a_baked_record_migrates_as_before(baked, monkeypatch):
    db = use(monkeypatch, Db({"alembic_version": "5f2621c13b39"}))
    assert database.migrate({}, lambda m: None) is True and len(db.ran) == 1


def test_the_admin_user_is_looked_up_in_fabs_table(monkeypatch):
    db = use(monkeypatch, Db({}, users=("admin",)))
    assert database.has_user("admin") and not database.has_user("other")
    db.users = None  # no ab_user table yet: nobody exists
    assert not database.has_user("admin")
