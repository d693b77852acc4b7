"""Settings from newsletter.toml and the environment, and the problems they report."""

import dataclasses

import pytest

from newsletter.config import (
    CONFIG_FILE,
    TRANSPORTS,
    Delivery,
    Secrets,
    Settings,
    Web,
    collect,
    load,
    sending_problems,
)
from newsletter.errors import ConfigError

ORIGIN = "ws/newsletter.toml"
SENDER = {
    "sender": {
        "from_name": "Riverside Physio",
        "from_address": "news@clinic.example.com",
        "postal_address": "1 River Road, Springfield",
    }
}


def with_sender(**sections):
    raw = {name: dict(values) for name, values in SENDER.items()}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def test_defaults_with_the_required_sender_keys():
    settings, problems = collect(SENDER, {}, ORIGIN)
    assert problems == []
    assert settings.sender.from_address == "news@clinic.example.com"
    assert settings.sender.postal_address == "1 River Road, Springfield"
    # Everything not given keeps its declared default.
    defaults = Settings()
    for section in ("database", "site", "delivery", "smtp", "sources", "schedule", "web"):
        assert getattr(settings, section) == getattr(defaults, section), section


def test_empty_file_reports_the_required_sender_keys():
    _, problems = collect({}, {}, ORIGIN)
    assert any(p.startswith("sender.from_address") for p in problems)
    assert any(p.startswith("sender.postal_address") for p in problems)


def test_file_values_are_used():
    raw = with_sender(web={"port": 8181}, delivery={"transport": "smtp", "rate_per_second": 2})
    settings, problems = collect(raw, {}, ORIGIN)
    assert problems == []
    assert settings.web.port == 8181
    assert settings.delivery.transport == "smtp"
    assert settings.delivery.rate_per_second == 2.0
    assert isinstance(settings.delivery.rate_per_second, float)


def test_env_overrides_the_file():
    raw = with_sender(web={"port": 8181})
    settings, problems = collect(raw, {"NEWSLETTER_WEB__PORT": "9000"}, ORIGIN)
    assert problems == []
    assert settings.web.port == 9000


def test_env_override_of_other_types():
    env = {
        "NEWSLETTER_TRACKING__ENABLED": "false",
        "NEWSLETTER_SOURCES__FOLDERS": "posts, drafts/published ,",
        "NEWSLETTER_DELIVERY__RATE_PER_SECOND": "2.5",
        "NEWSLETTER_SENDER__FROM_NAME": "From the Environment",
    }
    settings, problems = collect(SENDER, env, ORIGIN)
    assert problems == []
    assert settings.tracking.enabled is False
    assert settings.sources.folders == ["posts", "drafts/published"]
    assert settings.delivery.rate_per_second == 2.5
    assert settings.sender.from_name == "From the Environment"


def test_env_value_that_is_not_a_number_names_the_variable():
    settings, problems = collect(SENDER, {"NEWSLETTER_WEB__PORT": "nine thousand"}, ORIGIN)
    assert len(problems) == 1
    assert problems[0].startswith("NEWSLETTER_WEB__PORT:")
    assert "nine thousand" in problems[0]
    assert settings.web.port == Web().port


def test_env_value_that_is_not_a_boolean_names_the_variable():
    _, problems = collect(SENDER, {"NEWSLETTER_TRACKING__ENABLED": "sometimes"}, ORIGIN)
    assert [p.split(":")[0] for p in problems] == ["NEWSLETTER_TRACKING__ENABLED"]


def test_unrelated_environment_variables_are_ignored():
    env = {"PATH": "/usr/bin", "NEWSLETTER_NOPE": "1", "NEWSLETTER_HOME": "/srv/news"}
    settings, problems = collect(SENDER, env, ORIGIN)
    assert problems == []
    assert settings.web == Web()


def test_a_mistyped_environment_override_is_named_like_an_unknown_key_in_the_file():
    """A typo in an override must not leave the setting silently as it was."""
    env = {
        "NEWSLETTER_WEB__COLOUR": "red",
        "NEWSLETTER_WBE__PORT": "9000",
        "NEWSLETTER_web__port": "9000",
        "NEWSLETTER_SMTP__PASSWORD": "hunter2",
        "NEWSLETTER_DELIVERY__CONCURENCY": "4",
    }
    settings, problems = collect(SENDER, env, ORIGIN)
    assert problems == [
        "NEWSLETTER_DELIVERY__CONCURENCY: delivery.concurency: unknown key",
        "NEWSLETTER_SMTP__PASSWORD: smtp.password: unknown key; "
        "secrets are read from NEWSLETTER_SMTP_PASSWORD",
        "NEWSLETTER_WBE__PORT: unknown section [wbe]",
        "NEWSLETTER_WEB__COLOUR: web.colour: unknown key",
        "NEWSLETTER_web__port: web.port: unknown key; "
        "environment variable names are upper case: NEWSLETTER_WEB__PORT",
    ]
    assert "hunter2" not in "".join(problems)
    assert settings.web == Web() and settings.delivery == Delivery()
    # As in the file: `[web] colour` is "web.colour: unknown key".
    _, from_file = collect(with_sender(web={"colour": "red"}), {}, ORIGIN)
    assert from_file == [f"{ORIGIN}: web.colour: unknown key"]


def test_unknown_section_is_named():
    _, problems = collect(with_sender(webserver={"port": 1}), {}, ORIGIN)
    assert f"{ORIGIN}: unknown section [webserver]" in problems


def test_unknown_key_is_named():
    settings, problems = collect(with_sender(web={"colour": "red", "port": 8181}), {}, ORIGIN)
    assert f"{ORIGIN}: web.colour: unknown key" in problems
    assert len(problems) == 1
    assert settings.web.port == 8181


def test_section_that_is_not_a_table():
    _, problems = collect({**SENDER, "web": "8080"}, {}, ORIGIN)
    assert any("[web] must be a table" in p for p in problems)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("smtp", "password"),
        ("delivery", "api_key"),
        ("site", "secret_key"),
        ("tracking", "token"),
        ("sender", "dkim_private_key"),
    ],
)
def test_secret_looking_keys_are_refused(section, key):
    secret = "hunter2-do-not-store"
    settings, problems = collect(with_sender(**{section: {key: secret}}), {}, ORIGIN)
    [problem] = problems
    assert problem.startswith(f"{ORIGIN}: {section}.{key}:")
    assert "environment variable" in problem
    assert secret not in problem
    assert secret not in repr(settings.as_dict())


def test_secrets_come_only_from_the_environment():
    env = {"NEWSLETTER_SECRET_KEY": "s3cret-key", "NEWSLETTER_SMTP_PASSWORD": "pw-123"}
    secrets = Secrets.from_env(env)
    assert (secrets.secret_key, secrets.smtp_password) == ("s3cret-key", "pw-123")
    assert "s3cret-key" not in repr(secrets) and "pw-123" not in repr(secrets)
    settings, _ = collect(SENDER, env, ORIGIN)
    assert "s3cret-key" not in repr(settings.as_dict())
    assert "pw-123" not in repr(settings.as_dict())


def test_unknown_transport():
    _, problems = collect(with_sender(delivery={"transport": "carrier-pigeon"}), {}, ORIGIN)
    [problem] = problems
    assert problem.startswith("delivery.transport:")
    assert "carrier-pigeon" in problem
    assert all(name in problem for name in TRANSPORTS)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_known_transports_are_accepted(transport):
    # A public https base_url: links in mail that leaves the machine must work.
    raw = with_sender(
        delivery={"transport": transport}, site={"base_url": "https://news.clinic.example.com"}
    )
    settings, problems = collect(raw, {}, ORIGIN)
    assert problems == []
    assert settings.delivery.transport == transport


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "Europe/Nowhere", "", "../../etc/passwd", "America", "Etc"]
)
def test_bad_timezone(zone):
    _, problems = collect(with_sender(schedule={"timezone": zone}), {}, ORIGIN)
    assert [p for p in problems if p.startswith("schedule.timezone:")] == [
        f"schedule.timezone: unknown time zone {zone!r}"
    ]


def test_good_timezone():
    settings, problems = collect(with_sender(schedule={"timezone": "Europe/Dublin"}), {}, ORIGIN)
    assert problems == []
    assert settings.schedule.timezone == "Europe/Dublin"


@pytest.mark.parametrize("postal", [None, "", "   "])
def test_missing_postal_address(postal):
    raw = with_sender()
    if postal is None:
        del raw["sender"]["postal_address"]
    else:
        raw["sender"]["postal_address"] = postal
    _, problems = collect(raw, {}, ORIGIN)
    [problem] = problems
    assert problem.startswith("sender.postal_address:")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("web", "port", "eighty"),
        ("web", "port", True),
        ("delivery", "concurrency", [1]),
        ("delivery", "rate_per_second", "fast"),
        ("tracking", "enabled", "maybe"),
        ("sources", "folders", [1, 2]),
        ("sender", "from_name", 5),
    ],
)
def test_values_of_the_wrong_type_are_named(section, key, value):
    settings, problems = collect(with_sender(**{section: {key: value}}), {}, ORIGIN)
    assert any(p.startswith(f"{ORIGIN}: {section}.{key}:") for p in problems), problems
    default = getattr(Settings(), section)
    assert getattr(getattr(settings, section), key) == getattr(default, key)


@pytest.mark.parametrize(("section", "key"), [("web", "port"), ("delivery", "concurrency")])
def test_fractional_value_for_a_whole_number_is_a_problem(section, key):
    settings, problems = collect(with_sender(**{section: {key: 2.5}}), {}, ORIGIN)
    assert any(p.startswith(f"{ORIGIN}: {section}.{key}:") for p in problems), problems


@pytest.mark.parametrize(
    ("section", "values", "named"),
    [
        ("delivery", {"concurrency": 0}, "delivery.concurrency"),
        ("delivery", {"rate_per_second": -1}, "delivery.rate_per_second"),
        ("delivery", {"processes": -2}, "delivery.processes"),
        ("smtp", {"security": "tls1.3"}, "smtp.security"),
        ("smtp", {"port": 70000}, "smtp.port"),
        ("web", {"port": -1}, "web.port"),
        ("schedule", {"mode": "hourly"}, "schedule.mode"),
        ("schedule", {"poll_interval": 0}, "schedule.poll_interval"),
        ("site", {"base_url": "clinic.example.com"}, "site.base_url"),
    ],
)
def test_values_that_do_not_make_sense_are_named(section, values, named):
    _, problems = collect(with_sender(**{section: values}), {}, ORIGIN)
    assert [p.split(":")[0] for p in problems] == [named]


def test_all_problems_are_reported_at_once():
    raw = {
        "bogus": {},
        "web": {"port": "x", "colour": "red"},
        "smtp": {"password": "pw"},
        "delivery": {"transport": "fax"},
    }
    _, problems = collect(raw, {}, ORIGIN)
    for fragment in (
        "[bogus]",
        "web.port",
        "web.colour",
        "smtp.password",
        "delivery.transport",
        "sender.from_address",
        "sender.postal_address",
    ):
        assert any(fragment in p for p in problems), fragment


def test_load_without_a_config_file(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load(tmp_path, env={})
    message = str(excinfo.value)
    assert "`newsletter init`" in message
    assert str(tmp_path / CONFIG_FILE) in message


def test_load_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / CONFIG_FILE
    path.write_text('[sender]\nfrom_address = "news@clinic.example.com\n', encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load(tmp_path, env={})
    message = str(excinfo.value)
    assert message.startswith(str(path))
    assert "TOML" in message


def test_load_reads_the_file_and_the_environment(tmp_path):
    path = tmp_path / CONFIG_FILE
    path.write_text(
        "[sender]\n"
        'from_address = "news@clinic.example.com"\n'
        'postal_address = "1 River Road"\n'
        "[web]\n"
        "port = 8181\n"
        'colour = "red"\n'
        "[delivery]\n"
        "concurrency = 4\n",
        encoding="utf-8",
    )
    settings, problems = load(tmp_path, env={"NEWSLETTER_WEB__PORT": "9000"})
    assert problems == [f"{path}: web.colour: unknown key"]
    assert settings.web.port == 9000
    assert settings.delivery == dataclasses.replace(Delivery(), concurrency=4)


@pytest.mark.parametrize("value", [0, -5, 10_001, 1_000_000])
def test_an_items_cap_out_of_range_is_named(value):
    _, problems = collect(with_sender(sources={"max_items_per_feed": value}), {}, ORIGIN)
    assert problems == ["sources.max_items_per_feed: must be between 1 and 10000"]


def test_the_items_cap_has_a_default_and_can_be_set():
    settings, problems = collect(with_sender(), {}, ORIGIN)
    assert problems == [] and settings.sources.max_items_per_feed == 200
    settings, problems = collect(with_sender(sources={"max_items_per_feed": 25}), {}, ORIGIN)
    assert problems == [] and settings.sources.max_items_per_feed == 25


def test_a_config_file_saved_with_a_bom_is_read(tmp_path):
    """Windows Notepad writes UTF-8 with a byte-order mark; the file is meant all the same."""
    path = tmp_path / CONFIG_FILE
    text = (
        "[sender]\n"
        'from_address = "news@clinic.example.com"\n'
        'postal_address = "1 River Road"\n'
        "[web]\nport = 8181\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    settings, problems = load(tmp_path, env={})
    assert problems == []
    assert settings.web.port == 8181 and settings.sender.postal_address == "1 River Road"


# -- links that cannot work ----------------------------------------------------------


def link_problems(raw: dict) -> list[str]:
    """What stops sending with these settings because of their links (a problem of
    sending only: commands that send nothing run with any base_url)."""
    settings, problems = collect(raw, {}, ORIGIN)
    assert problems == []
    return [p for p in sending_problems(settings, Secrets()) if p.startswith("site.base_url:")]


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:8080", "is a local or private address"),
        ("https://localhost", "is a local or private address"),
        ("https://10.1.2.3", "is a local or private address"),
        ("https://[::1]:8443", "is a local or private address"),
        ("https://news.internal", "is a local or private address"),
        ("http://news.clinic.example.com", "is not https"),
        ("https://news.clinic.example.com", None),
    ],
)
def test_mail_that_leaves_the_machine_needs_public_https_links(base_url, expected):
    raw = with_sender(
        delivery={"transport": "smtp"},
        smtp={"host": "smtp.example.net"},
        site={"base_url": base_url},
    )
    found = link_problems(raw)
    if expected is None:
        assert found == []
    else:
        [problem] = found
        assert expected in problem and base_url in problem and "List-Unsubscribe" in problem


@pytest.mark.parametrize(
    "sections",
    [
        {"delivery": {"transport": "outbox"}},
        {"delivery": {"transport": "smtp"}, "smtp": {"host": "127.0.0.1"}},
        {"delivery": {"transport": "smtp"}, "smtp": {"host": "localhost"}},
        {"delivery": {"transport": "sendgrid"}, "sendgrid": {"api_base": "http://127.0.0.1:9"}},
        {"delivery": {"transport": "ses"}, "ses": {"endpoint_url": "http://127.0.0.1:9"}},
    ],
)
def test_mail_that_stays_on_the_machine_may_use_local_links(sections):
    assert link_problems(with_sender(site={"base_url": "http://127.0.0.1:8080"}, **sections)) == []


@pytest.mark.parametrize("transport", ["sendgrid", "mailgun", "postmark", "ses"])
def test_email_apis_leave_the_machine(transport):
    assert link_problems(with_sender(delivery={"transport": transport}))


def test_config_check_refuses_dead_links_and_warns_on_a_port_mismatch(cli) -> None:
    cli.env.update(
        NEWSLETTER_DELIVERY__TRANSPORT="smtp",
        NEWSLETTER_SMTP__HOST="smtp.example.net",
        NEWSLETTER_SITE__BASE_URL="http://127.0.0.1:8080",
    )
    result = cli("config", "check", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "site.base_url: http://127.0.0.1:8080 is a local or private address" in result.stderr
    cli.env.update(
        NEWSLETTER_DELIVERY__TRANSPORT="outbox",
        NEWSLETTER_SITE__BASE_URL="http://127.0.0.1:8080",
        NEWSLETTER_WEB__PORT="9000",
    )
    result = cli("config", "check")
    assert "warning: site.base_url: http://127.0.0.1:8080 uses port 8080" in result.stderr
    assert "[web] port 9000" in result.stderr
    # Behind a proxy the public port is the proxy's: no warning.
    cli.env["NEWSLETTER_SITE__BASE_URL"] = "https://news.clinic.example.com"
    assert "warning" not in cli("config", "check").stderr
    cli.env["NEWSLETTER_SITE__BASE_URL"] = "http://127.0.0.1:9000"
    assert "warning" not in cli("config", "check").stderr


# -- SMTP to this machine, which usually relays on ----------------------------------


def relay_warnings(raw: dict) -> list[str]:
    from newsletter.config import local_relay_warnings

    settings, problems = collect(raw, {}, ORIGIN)
    assert problems == []
    return local_relay_warnings(settings)


@pytest.mark.parametrize(
    ("host", "base_url", "expected"),
    [
        ("localhost", "http://127.0.0.1:8080", "is a local or private address"),
        ("127.0.0.1", "https://10.1.2.3", "is a local or private address"),
        ("::1", "http://news.clinic.example.com", "is not https"),
        ("localhost", "https://news.clinic.example.com", None),
        ("smtp.example.net", "https://news.clinic.example.com", None),
    ],
)
def test_smtp_to_a_local_relay_with_local_links_is_warned_about(host, base_url, expected):
    raw = with_sender(
        delivery={"transport": "smtp"}, smtp={"host": host}, site={"base_url": base_url}
    )
    found = relay_warnings(raw)
    if expected is None:
        assert found == []
    else:
        [warning] = found
        assert expected in warning and base_url in warning and "(smtp.host)" in warning
        assert "only work if the mail never leaves this machine" in warning
    # Allowed all the same: a mail catcher on this machine is what tests and previews use.
    assert link_problems(raw) == []


def test_the_outbox_and_a_remote_smtp_server_get_no_relay_warning():
    local = {"base_url": "http://127.0.0.1:8080"}
    assert relay_warnings(with_sender(delivery={"transport": "outbox"}, site=local)) == []
    # A remote server with local links is refused outright, not warned about.
    remote = with_sender(
        delivery={"transport": "smtp"}, smtp={"host": "smtp.example.net"}, site=local
    )
    assert relay_warnings(remote) == []


def test_config_check_warns_that_local_smtp_may_relay_the_mail_out(cli) -> None:
    cli.env.update(
        NEWSLETTER_DELIVERY__TRANSPORT="smtp",
        NEWSLETTER_SMTP__HOST="localhost",
        NEWSLETTER_SITE__BASE_URL=f"http://127.0.0.1:{cli.env['NEWSLETTER_WEB__PORT']}",
    )
    result = cli("config", "check")  # a warning, not a refusal
    assert "ok (transport smtp" in result.stdout
    [line] = [line for line in result.stderr.splitlines() if "(smtp.host)" in line]
    assert line.startswith("warning: site.base_url: http://127.0.0.1:")
    assert "only work if the mail never leaves this machine" in line
