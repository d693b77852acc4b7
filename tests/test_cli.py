"""The CLI contract: every command documented, and every user error one clear line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest

from conftest import Cli, dump, free_port, one_line_error
from newsletter.cli import cli as cli_group


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


@pytest.mark.parametrize("path", list(_commands(cli_group)), ids=" ".join)
def test_every_command_has_help_with_an_example(cli: Cli, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert "Example:" in result.stdout
    assert f"Usage: python -m newsletter {' '.join(path)}" in result.stdout


def test_console_script_runs_in_the_installed_environment() -> None:
    script = Path(sys.executable).with_name("newsletter")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "campaign" in result.stdout


@pytest.fixture
def ready(cli: Cli, ws_dir: Path) -> Cli:
    cli("fetch")
    cli("subscribers", "import", "subscribers/example.csv")
    cli("campaign", "create", "--subject", "Hello")
    return cli


BAD_INPUT = [
    (("campaign", "send", "99"), ("campaign 99", "campaign list")),
    (("campaign", "preview", "99"), ("campaign 99",)),
    (("stats", "42"), ("campaign 42",)),
    (("campaign", "schedule", "1", "--at", "tomorrow"), ("--at", "YYYY-MM-DD HH:MM")),
    (("campaign", "schedule", "1", "--at", "2020-01-01 09:00"), ("in the past",)),
    (("campaign", "schedule", "1", "--at", "2030-01-01 09:00", "--tz", "Mars/Base"), ("--tz",)),
    (("campaign", "create", "--subject", "x", "--articles", "1,99"), ("article 99",)),
    (("campaign", "create", "--subject", "x", "--articles", "one"), ("--articles",)),
    (("campaign", "create", "--subject", "x", "--articles", "1", "--list", "no"), ("list 'no'",)),
    (("campaign", "create", "--subject", "x", "--template", "nope"), ("template 'nope'",)),
    (("campaign", "pause", "1"), ("campaign 1", "draft")),
    (("campaign", "retry", "1"), ("campaign 1", "cannot retry", "draft")),
    (("campaign", "test", "1", "--to", "not-an-address"), ("--to",)),
    (("subscribers", "import", "missing.csv"), ("missing.csv", "cannot read")),
    (("subscribers", "unsubscribe", "nobody@example.com"), ("nobody@example.com",)),
    (("subscribers", "delete", "nobody@example.com"), ("nobody@example.com",)),
    (("campaign", "preview", "1", "--out", "no/such/dir/x.html"), ("--out",)),
]


@pytest.mark.parametrize("args,needles", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_changes_nothing(
    ready: Cli, ws_dir: Path, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    before = dump(ws_dir / "newsletter.db")
    one_line_error(ready(*args, check=False), *needles)
    assert dump(ws_dir / "newsletter.db") == before


def test_unreadable_csv_files(ready: Cli, ws_dir: Path) -> None:
    (ws_dir / "junk.csv").write_bytes(b"\x00\x01\x02binary\xff" * 50)
    (ws_dir / "noemail.csv").write_text("name,city\nAnn,Oslo\n")
    before = dump(ws_dir / "newsletter.db")
    one_line_error(ready("subscribers", "import", "junk.csv", check=False), "junk.csv", "binary")
    one_line_error(
        ready("subscribers", "import", "noemail.csv", check=False), "noemail.csv:1", "email"
    )
    assert dump(ws_dir / "newsletter.db") == before


def test_bad_rows_are_reported_with_line_numbers_and_good_rows_kept(ready: Cli, ws_dir) -> None:
    (ws_dir / "mixed.csv").write_text("email\ngood@example.com\nnot an address\nok@example.org\n")
    result = ready("subscribers", "import", "mixed.csv", check=False)
    assert result.returncode == 1
    assert "mixed.csv:3: invalid address 'not an address'" in result.stderr
    assert "2 added" in result.stdout
    strict = ready("subscribers", "import", "--strict", "mixed.csv", check=False)
    assert "--strict: nothing imported" in strict.stderr


def test_missing_workspace_says_to_run_init(tmp_path: Path, env: dict[str, str]) -> None:
    result = Cli(tmp_path, env)("fetch", check=False)
    one_line_error(result, "newsletter.toml", "newsletter init")
    assert not (tmp_path / "newsletter.db").exists()


def test_missing_config_key_is_named(cli: Cli, ws_dir: Path) -> None:
    config = ws_dir / "newsletter.toml"
    config.write_text(config.read_text().replace("postal_address =", "# postal_address ="))
    one_line_error(cli("campaign", "list", check=False), "sender.postal_address")


def test_bad_environment_value_is_named(cli: Cli, env: dict[str, str]) -> None:
    env["NEWSLETTER_WEB__PORT"] = "eighty"
    one_line_error(cli("campaign", "list", check=False), "NEWSLETTER_WEB__PORT")


def test_config_check_lists_every_problem(cli: Cli, ws_dir: Path, env) -> None:
    assert "ok" in cli("config", "check").stdout
    config = ws_dir / "newsletter.toml"
    text = config.read_text().replace('transport = "outbox"', 'transport = "pigeon"')
    config.write_text(text + '\n[smtp_extra]\nhost = "x"\n')
    env["NEWSLETTER_SMTP__PASSWORD"] = "hunter2"  # not a setting: named, never echoed
    env["NEWSLETTER_SCHEDULE__TIMEZONE"] = "Nowhere/City"
    result = cli("config", "check", check=False)
    assert result.returncode == 1
    assert "delivery.transport" in result.stderr
    assert "[smtp_extra]" in result.stderr
    assert "schedule.timezone" in result.stderr
    assert "NEWSLETTER_SMTP__PASSWORD: smtp.password: unknown key" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "4 problem(s)" in result.stderr


def test_secret_in_the_file_is_refused(cli: Cli, ws_dir: Path) -> None:
    config = ws_dir / "newsletter.toml"
    config.write_text(config.read_text().replace('username = ""', 'password = "hunter2"'))
    result = cli("config", "check", check=False)
    assert "smtp.password" in result.stderr and "environment" in result.stderr
    assert "hunter2" not in result.stderr


def test_unknown_transport_is_a_config_error(ready: Cli, env: dict[str, str]) -> None:
    env["NEWSLETTER_DELIVERY__TRANSPORT"] = "pigeon"
    one_line_error(ready("campaign", "send", "1", check=False), "delivery.transport", "pigeon")


def test_unwritable_workspace(tmp_path: Path, env: dict[str, str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = Cli(tmp_path, env)("init", str(blocker / "ws"), check=False)
    one_line_error(result, str(blocker / "ws"), "cannot write")


def test_port_in_use_is_one_line(ready: Cli, port: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        one_line_error(ready("serve", check=False), "web.port", str(port))


def test_init_twice_changes_nothing(cli: Cli, ws_dir: Path) -> None:
    config = (ws_dir / "newsletter.toml").read_text()
    key = (ws_dir / ".secret_key").read_text()
    assert "nothing changed" in cli("init").stdout
    assert (ws_dir / "newsletter.toml").read_text() == config
    assert (ws_dir / ".secret_key").read_text() == key
    assert (ws_dir / ".secret_key").stat().st_mode & 0o077 == 0


def test_export_escapes_formulas(ready: Cli, ws_dir: Path) -> None:
    (ws_dir / "evil.csv").write_text('email,first_name\nevil@example.com,"=HYPERLINK(""x"")"\n')
    ready("subscribers", "import", "--confirmed", "evil.csv")
    exported = ready("subscribers", "export").stdout
    assert "'=HYPERLINK" in exported
    assert ",=HYPERLINK" not in exported


def test_unsubscribe_and_delete_from_the_cli(ready: Cli) -> None:
    address = "alice.moreno@example.com"
    assert "unsubscribed" in ready("subscribers", "unsubscribe", address).stdout
    assert f"{address}\tunsubscribed" in ready("subscribers", "list").stdout
    record = ready("subscribers", "export", address, "--json").stdout
    assert '"consents"' in record and address in record
    ready("subscribers", "delete", address)
    assert address not in ready("subscribers", "list").stdout


def test_config_check_transport_connects_without_sending(cli: Cli) -> None:
    from smtp_sink import SmtpSink, smtp_env

    assert cli("config", "check", "--transport").stdout.splitlines()[-1].startswith("outbox ")
    with SmtpSink() as sink:
        cli.env.update(smtp_env(sink))
        result = cli("config", "check", "--transport")
        assert result.stdout.splitlines()[-1] == (
            f"smtp 127.0.0.1:{sink.port}: connected (none) and hung up; "
            "no SMTPUTF8 (mailboxes with non-ASCII local parts)"
        )
        assert sink.messages == []
    cli.env["NEWSLETTER_SMTP__PORT"] = str(free_port())  # nobody listens there
    refused = cli("config", "check", "--transport", check=False)
    assert refused.returncode == 1
    assert "cannot connect" in refused.stderr and "Traceback" not in refused.stderr


def test_output_to_a_full_disk_is_one_line_naming_it(ready: Cli, ws_dir: Path) -> None:
    """`newsletter subscribers export > FILE` on a full disk: the file and its disk named."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "newsletter",
                "--workspace",
                str(ws_dir),
                "subscribers",
                "export",
            ],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=ready.env,
            cwd=ws_dir,
            timeout=120,
        )
    result.stdout = ""
    one_line_error(result, "/dev/full: the disk is full (the disk mounted at /dev)")
    assert "free some space" in result.stderr


def test_a_preview_written_to_a_full_disk_names_the_file(ready: Cli) -> None:
    result = ready("campaign", "preview", "1", "--out", "/dev/full", check=False)
    one_line_error(result, "--out /dev/full: cannot write: the disk is full", "/dev")


def test_a_real_enospc_is_translated_into_one_line_naming_the_disk(tmp_path: Path) -> None:
    """The translation itself, on the OSError a write to /dev/full really raises."""
    from newsletter.errors import os_error_line

    with pytest.raises(OSError) as caught:
        with open("/dev/full", "wb") as full:
            full.write(b"subscriber data")
            full.flush()
    assert caught.value.filename is None  # write() names no file: the caller must
    line = os_error_line(caught.value, "/dev/full")
    assert line.startswith("/dev/full: the disk is full (the disk mounted at /dev): ")
    assert line.endswith("free some space there and try again")
    denied = OSError(13, "Permission denied", str(tmp_path / "x"))
    assert os_error_line(denied) == f"{tmp_path / 'x'}: Permission denied"
