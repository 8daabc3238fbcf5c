"""The queue commands (list, show, create, cancel, retry, accounts) against a real Postgres."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable

import pytest

from tests.conftest import REALM, ha1
from tests.ops_support import Ran, clean_env, query, runner
from tests.pg import PgTestServer, with_database

Run = Callable[..., Ran]


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    clean_env(monkeypatch, database_url=db_url, sip_realm=REALM)
    return runner(capsys)


def rows(db_url: str) -> list[dict[str, object]]:
    return query(db_url, "SELECT * FROM callback_requests ORDER BY id")


def test_create_computes_ha1_and_show_never_prints_it(cli: Run, db_url: str) -> None:
    ran = cli(
        "create",
        "--username",
        "801",
        "--authname",
        "902",
        "--password",
        "pw-902",
        "--cli",
        "87654321",
        "--cld",
        "12345",
        "--json",
    )
    assert ran.code == 0, ran.err
    assert ran.json["status"] == "pending"
    (row,) = rows(db_url)
    assert (row["md5secret"], row["original_cld"]) == (ha1("902"), "2way_12345")

    shown = cli("show", str(row["id"]))
    assert shown.code == 0, shown.err
    assert "original_cld  2way_12345" in shown.out
    assert "history:" in shown.out and "pending" in shown.out
    assert ha1("902") not in shown.out and "md5secret" not in shown.out
    detail = cli("show", str(row["id"]), "--json").json
    assert detail["history"][0]["new_status"] == "pending"
    assert "md5secret" not in detail


def test_create_reads_the_password_from_stdin(
    cli: Run, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("pw-801\n"))
    ran = cli(
        "create",
        "--username",
        "801",
        "--password",
        "-",
        "--realm",
        "other.realm",
        "--cli",
        "1",
        "--cld",
        "2",
    )
    assert ran.code == 0, ran.err
    assert rows(db_url)[0]["md5secret"] == ha1("801", realm="other.realm")


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--username", "801", "--md5secret", "x" * 32, "--cli", "1", "--cld", "2"], "md5secret"),
        (["--username", "801", "--md5secret", ha1("801"), "--cld", "2"], "original_cli"),
        (["--username", "8 01", "--md5secret", ha1("801"), "--cli", "1", "--cld", "2"], "username"),
        (["--username", "801", "--cli", "1", "--cld", "2"], "md5secret"),  # dynamic mode
        (
            [
                "--username",
                "801",
                "--md5secret",
                ha1("801"),
                "--password",
                "p",
                "--cli",
                "1",
                "--cld",
                "2",
            ],
            "password",
        ),
        (
            [
                "--username",
                "801",
                "--md5secret",
                ha1("801"),
                "--cli",
                "1",
                "--cld",
                "2",
                "--next-call",
                "tomorrow",
            ],
            "next_call",
        ),
    ],
)
def test_bad_create_names_the_field_and_writes_nothing(
    cli: Run, db_url: str, argv: list[str], field: str
) -> None:
    ran = cli("create", *argv)
    assert ran.code == 2
    assert f"{field}:" in ran.err
    assert "x" * 32 not in ran.err
    assert rows(db_url) == []


def create(cli: Run, cli_number: str = "87654321", **extra: str) -> int:
    argv = [
        "create",
        "--username",
        "801",
        "--md5secret",
        ha1("801"),
        "--cli",
        cli_number,
        "--cld",
        "12345",
        "--json",
    ]
    for name, value in extra.items():
        argv += [f"--{name.replace('_', '-')}", value]
    ran = cli(*argv)
    assert ran.code == 0, ran.err
    request_id: int = ran.json["id"]
    return request_id


def test_list_filters_newest_first_and_bounded(cli: Run, db_url: str) -> None:
    first = create(cli, "111")
    second = create(cli, "222")
    third = create(cli, "333")
    query(
        db_url,
        "UPDATE callback_requests SET status = 'failed', result = 'callback_busy',"
        " source = 'inbound', username = '900' WHERE id = $1",
        second,
    )

    def ids(*argv: str) -> list[int]:
        ran = cli("list", "--json", *argv)
        assert ran.code == 0, ran.err
        return [item["id"] for item in ran.json]

    assert ids() == [third, second, first]
    assert ids("--limit", "2") == [third, second]
    assert ids("--status", "failed") == [second]
    assert ids("--status", "pending,failed", "--status", "cancelled") == [third, second, first]
    assert ids("--result", "callback_busy") == [second]
    assert ids("--source", "inbound") == [second]
    assert ids("--username", "801") == [third, first]
    assert ids("--number", "333") == [third]
    assert ids("--number", "12345") == [third, second, first]  # the destination's CLD
    assert ids("--since", "10m") == [third, second, first]
    assert ids("--since", "2099-01-01T00:00:00+00:00") == []
    table = cli("list")
    assert table.out.splitlines()[0].split()[:3] == ["id", "status", "result"]
    assert "(more rows" in cli("list", "--limit", "1").out
    assert "md5secret" not in table.out and ha1("801") not in table.out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--status", "ringing"], "status"),
        (["--limit", "0"], "limit"),
        (["--limit", "501"], "limit"),
        (["--since", "yesterday"], "created_from"),
    ],
)
def test_bad_list_filters_are_refused(cli: Run, argv: list[str], says: str) -> None:
    ran = cli("list", *argv)
    assert ran.code == 2
    assert says in ran.err


def test_cancel_then_again_then_missing(cli: Run, db_url: str) -> None:
    request_id = create(cli)
    ran = cli("cancel", str(request_id))
    assert ran.code == 0, ran.err
    assert rows(db_url)[0]["status"] == "cancelled"
    again = cli("cancel", str(request_id))
    assert (again.code, "already cancelled" in again.err) == (1, True)
    missing = cli("cancel", "999999")
    assert (missing.code, "no callback request 999999" in missing.err) == (1, True)
    assert cli("cancel", "abc").code == 2


def test_retry_sends_a_failed_row_back_with_the_reason(cli: Run, db_url: str) -> None:
    request_id = create(cli)
    query(
        db_url,
        "UPDATE callback_requests SET status = 'failed', result = 'callback_failed',"
        " result_reason = 'cause 34', attempts = 3, ended_at = now() WHERE id = $1",
        request_id,
    )
    ran = cli("retry", str(request_id), "--reason", "trunk fixed, ticket 42")
    assert ran.code == 0, ran.err
    (row,) = rows(db_url)
    assert (row["status"], row["result"], row["attempts"], row["ended_at"]) == (
        "pending",
        None,
        0,
        None,
    )
    history = cli("show", str(request_id), "--json").json["history"]
    assert [(h["new_status"], h["reason"]) for h in history] == [
        ("pending", None),
        ("failed", "cause 34"),
        ("pending", "retried by operator: trunk fixed, ticket 42"),
    ]
    again = cli("retry", str(request_id), "--reason", "twice")
    assert (again.code, "is pending: only a failed one" in again.err) == (1, True)
    assert cli("retry", "999999", "--reason", "x").code == 1
    assert cli("retry", str(request_id), "--reason", " ").code == 2


def test_accounts_add_list_disable(cli: Run, db_url: str) -> None:
    ran = cli(
        "accounts",
        "add",
        "--cli",
        "4930123456",
        "--username",
        "801",
        "--authname",
        "902",
        "--password",
        "pw-902",
    )
    assert (ran.code, ran.out) == (0, "account 4930123456 added\n"), ran.err
    (account,) = query(db_url, "SELECT * FROM callback_accounts")
    assert account["md5secret"] == ha1("902")
    dup = cli(
        "accounts", "add", "--cli", "4930123456", "--username", "803", "--md5secret", ha1("903")
    )
    assert (dup.code, "already has an account" in dup.err) == (1, True)
    bad = cli("accounts", "add", "--cli", "49 30", "--username", "801", "--md5secret", "nothex")
    assert bad.code == 2 and "cli:" in bad.err and "md5secret:" in bad.err
    assert len(query(db_url, "SELECT * FROM callback_accounts")) == 1

    assert cli("accounts", "disable", "4930123456").code == 0
    listed = cli("accounts", "list", "--json").json
    assert [(a["cli"], a["username"], a["enabled"]) for a in listed] == [
        ("4930123456", "801", False)
    ]
    assert "md5secret" not in cli("accounts", "list").out
    assert cli("accounts", "enable", "4930123456").code == 0
    assert query(db_url, "SELECT enabled FROM callback_accounts")[0]["enabled"] is True
    assert cli("accounts", "disable", "000").code == 1


def test_an_unmigrated_database_is_refused(
    pg_server: PgTestServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"twoway_t_empty_{uuid.uuid4().hex[:8]}"
    asyncio.run(pg_server._admin(f'CREATE DATABASE "{name}"'))
    try:
        clean_env(monkeypatch, database_url=with_database(pg_server.admin_url, name))
        ran = runner(capsys)("list")
        assert ran.code == 1
        assert "not migrated" in ran.err and "twoway-callback migrate" in ran.err
    finally:
        pg_server.drop_database(name)


def test_an_unreachable_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env(monkeypatch, database_url="postgresql://twoway:pw-in-url@127.0.0.1:1/twoway")
    ran = runner(capsys)("list")
    assert ran.code == 1
    assert ran.err.startswith("twoway-callback: database:")
    assert "pw-in-url" not in ran.err and "Traceback" not in ran.err
