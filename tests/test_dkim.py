"""DKIM: signatures made here verify with dkimpy, cover the unsubscribe headers, break on edits."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import time
from pathlib import Path

import dkim as dkimpy
import pytest
from dkim.canonicalization import CanonicalizationPolicy

from clocks import NOW
from newsletter import jobs
from newsletter.dkim import (
    DkimSigner,
    generate_key,
    relaxed_body,
    relaxed_headers,
    sha256_digest,
    sign_all,
    split_message,
)
from newsletter.errors import ConfigError
from newsletter.mime import canonical_crlf, compose
from newsletter.transports import Envelope
from newsletter.transports.signing import DkimSigning, SigningHelper
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink, smtp_env
from workspaces import new_campaign, sent_campaign

GOLDEN = Path(__file__).parent / "golden"


def _message() -> bytes:
    return compose(
        subject="Grüße from the clinic",
        text="Hello Zoë\n" * 40,
        html="<p>Hello</p>\n" * 40,
        from_name="Riverbend PT",
        from_address="news@clinic.example.com",
        to_address="zoe@example.org",
        to_name="Zoë Brennan",
        msg_id="<c1.k.1@clinic.example.com>",
        date=NOW,
        unsubscribe_url="https://news.clinic.example.com/u/" + "A" * 40,
        list_id="Riverbend PT <newsletter.clinic.example.com>",
        feedback_id="c1:newsletter:clinic.example.com",
    )


def _verify(message: bytes, record: str) -> bool:
    return dkimpy.verify(message, dnsfunc=lambda name, timeout=5: record.encode())


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_signature_verifies_and_covers_the_unsubscribe_headers(algorithm: str) -> None:
    pem, record = generate_key(algorithm)
    signer = DkimSigner.from_pem("clinic.example.com", "nl", pem, "test key")
    signed = signer.sign(_message())
    assert _verify(signed, record)
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = header.replace("\r\n\t", "")
    tags = dict(part.strip().split("=", 1) for part in unfolded.split("\r\n")[0][15:].split(";"))
    signed_headers = tags["h"].split(":")
    for name in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert name in signed_headers
    assert tags["d"] == "clinic.example.com" and tags["s"] == "nl"
    assert tags["a"] == ("rsa-sha256" if algorithm == "rsa" else "ed25519-sha256")


def test_any_change_breaks_the_signature() -> None:
    pem, record = generate_key("rsa")
    signed = DkimSigner.from_pem("clinic.example.com", "nl", pem, "k").sign(_message())
    assert not _verify(signed.replace(b"Hello Zo", b"Hallo Zo", 1), record)
    assert not _verify(signed.replace(b"/u/AAAA", b"/u/BBBB", 1), record)
    other_pem, other_record = generate_key("rsa")
    assert not _verify(signed, other_record)


def test_bad_keys_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key.pem: not a PEM private key"):
        DkimSigner.from_pem("d.example", "s", b"not a key", "key.pem")


def _signing_workspace(
    ws_dir: Path, tmp_path: Path, sink: SmtpSink, **env: str
) -> tuple[Workspace, str]:
    """The fixture workspace sending to ``sink`` and signing with a new RSA key; its DNS record."""
    pem, record = generate_key("rsa")
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem)
    ws = Workspace.open(
        ws_dir,
        env=smtp_env(
            sink,
            NEWSLETTER_DKIM__DOMAIN="clinic.example.com",
            NEWSLETTER_DKIM__SELECTOR="nl",
            NEWSLETTER_DKIM__PRIVATE_KEY_FILE=str(key_file),
            **env,
        ),
    )
    return ws, record


def test_smtp_messages_are_signed_when_dkim_is_configured(ws_dir: Path, tmp_path: Path) -> None:
    with SmtpSink() as sink:
        ws, record = _signing_workspace(ws_dir, tmp_path, sink)
        campaign_id = new_campaign(ws, NOW, "Signed")
        progress = jobs.send_campaign(ws, ws.store, campaign_id, lambda: NOW)
        ws.close()
    assert progress.sent == len(sink.messages) > 0
    for received in sink.messages:
        assert received.data.startswith(b"DKIM-Signature:")
        assert _verify(received.data, record)


def test_a_campaign_signed_by_a_ready_helper_verifies_message_by_message(
    ws_dir: Path, tmp_path: Path
) -> None:
    # The fixture's few subscribers would all go out before a new helper is ready: here
    # it is made ready first, so every message takes the prepare -> helper -> send path.
    with SmtpSink() as sink:
        ws, record = _signing_workspace(
            ws_dir, tmp_path, sink, NEWSLETTER_DELIVERY__CONCURRENCY="2"
        )
        campaign_id = new_campaign(ws, NOW, "Signed by the helper")
        mail, transport = jobs.prepare_send(ws, ws.store, campaign_id, NOW)
        try:
            helper = _ready_helper(transport.sign)  # type: ignore[attr-defined]
            before = helper.heard
            progress = jobs.send_prepared(ws, ws.store, mail, transport, lambda: NOW)
        finally:
            transport.close()
            ws.close()
    assert progress.sent == len(sink.messages) > 0
    assert helper.heard - before == progress.sent and not helper.failed
    for received in sink.messages:
        assert received.data.startswith(b"DKIM-Signature:")
        assert _verify(received.data, record)


def test_missing_key_file_is_one_line(cli, ws_dir: Path, env: dict[str, str]) -> None:
    env.update(
        NEWSLETTER_DELIVERY__TRANSPORT="smtp",
        NEWSLETTER_DKIM__DOMAIN="clinic.example.com",
        NEWSLETTER_DKIM__SELECTOR="nl",
        NEWSLETTER_DKIM__PRIVATE_KEY_FILE="/nonexistent/dkim.pem",
    )
    cli("fetch")
    cli("campaign", "create", "--subject", "x")
    result = cli("campaign", "send", "1", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "dkim.private_key_file /nonexistent/dkim.pem: cannot read" in result.stderr


def test_keygen_writes_a_private_key_and_prints_the_record(cli, tmp_path: Path) -> None:
    out = tmp_path / "dkim.pem"
    result = cli("dkim", "keygen", "--selector", "nl2026", "--out", str(out)).stdout
    assert out.stat().st_mode & 0o077 == 0
    assert "nl2026._domainkey.clinic.example.com. IN TXT" in result
    record = "".join(re.findall(r'"([^"]*)"', result.split("IN TXT ")[1].split("\n")[0]))
    signed = DkimSigner.from_pem("clinic.example.com", "nl2026", out.read_bytes(), "k").sign(
        _message()
    )
    assert _verify(signed, record)
    again = cli("dkim", "keygen", "--out", str(out), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr


def _bodies() -> list[bytes]:
    rng = random.Random(6376)
    pieces = [b"a", b"b", b" ", b"  ", b"\t", b" \t ", b"\r\n", b"\r\n\r\n"]
    made = [b"", b"\r\n", b"\r\n\r\n", b"x", b"x \t\r\n\t\r\n \r\n", b" lead\r\n"]
    made += [b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    # Without tabs too, as our own messages are (a faster rule handles those).
    spaces = [p for p in pieces if b"\t" not in p]
    made += [b"".join(rng.choice(spaces) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    return made


def test_our_relaxed_body_rule_matches_dkimpy() -> None:
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    for body in _bodies():
        assert relaxed_body(body) == policy.canonicalize_body(body), body


@pytest.mark.parametrize("source", ["built", "golden", "odd"])
def test_our_header_split_matches_dkimpy(source: str) -> None:
    if source == "built":
        messages = [_message()]
    elif source == "golden":
        messages = [p.read_bytes() for p in sorted(GOLDEN.glob("*.eml"))]
    else:  # not CRLF throughout, folded oddly: handed to dkimpy's parser as they are
        messages = [
            b"Subject: a\nTo: b@example.org\n\nbody\n",
            b"Subject: a\r\n\tfolded\r\nX-Y:\r\n\r\nbody \r\n\r\n",
            b"Subject: a\r\nTo: b@example.org\r\n\r\nbare\nline\r\n",
            b"SUBJECT:\t a  b\t\tc \r\n\t d\r\n e \t\r\nX-Empty:\r\nX-Tab:\tv\r\n\r\nb\r\n",
        ]
    assert messages
    relaxed = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    for message in messages:
        assert split_message(message) == dkimpy.rfc822_parse(message)
        headers = split_message(message)[0]
        assert relaxed_headers(headers) == relaxed.canonicalize_headers(headers)
        if canonical_crlf(message) == message:
            # What the SMTP transport passes, having made every line end CRLF itself.
            assert split_message(message, crlf=True) == dkimpy.rfc822_parse(message)


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_a_message_said_to_be_crlf_is_signed_as_one_checked_for_it(algorithm: str) -> None:
    pem, record = generate_key(algorithm)
    signer = DkimSigner.from_pem("clinic.example.com", "nl", pem, "test key")
    signer.clock = lambda: 1e9  # one t= tag for both
    message = _message()
    checked, trusted = signer.sign(message), signer.sign(message, crlf=True)
    assert _verify(trusted, record)
    if algorithm == "ed25519":  # deterministic signatures: the very same bytes
        assert trusted == checked


# -- both verifiers, both algorithms, and a re-serialised message ------------------------

VERIFY_PL = Path(__file__).parent / "dkim_verify.pl"
DOMAIN = "clinic.example.com"


def _keys(tmp_path: Path, algorithms: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """(settings for [dkim] as env, the DNS records by name) for one key per algorithm."""
    env = {"NEWSLETTER_DKIM__DOMAIN": DOMAIN}
    records = {}
    for algorithm in algorithms:
        pem, record = generate_key(algorithm)
        path = tmp_path / f"{algorithm}.pem"
        path.write_bytes(pem)
        selector = f"nl-{algorithm}"
        prefix = "NEWSLETTER_DKIM__" + (
            "ED25519_" if algorithm == "ed25519" and len(algorithms) > 1 else ""
        )
        env[prefix + "SELECTOR"] = selector
        env[prefix + "PRIVATE_KEY_FILE"] = str(path)
        records[f"{selector}._domainkey.{DOMAIN}"] = record
    return env, records


def _dkimpy_results(message: bytes, records: dict[str, str]) -> list[bool]:
    """dkimpy's verdict on each signature, top first."""

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode().rstrip("."), "").encode()

    count = len(re.findall(rb"(?mi)^DKIM-Signature:", message))
    results = []
    for i in range(count):
        try:
            results.append(bool(dkimpy.DKIM(message).verify(idx=i, dnsfunc=dns)))
        except dkimpy.DKIMException:  # a body hash that does not match is raised, not returned
            results.append(False)
    return results


def _mail_dkim_results(message: bytes, records: dict[str, str]) -> list[str]:
    """Perl's Mail::DKIM verdict on each signature: "pass rsa-sha256 nl-rsa pass" ..."""
    import shutil
    import subprocess

    assert shutil.which("perl"), "perl is not installed"
    done = subprocess.run(
        ["perl", str(VERIFY_PL), *(f"{name}={txt}" for name, txt in records.items())],
        input=message,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


def _mail_dkim_knows_ed25519() -> bool:
    """Whether the installed Mail::DKIM can verify ed25519-sha256 at all.

    Upstream Mail::DKIM verifies Ed25519 since its 2023 releases after 1.20230212,
    through Mail::DKIM::Algorithm::ed25519_sha256 and CryptX's Crypt::PK::Ed25519
    (Debian: libcryptx-perl, in the Makefile's system packages). Debian 12's
    libmail-dkim-perl is 1.20230212: its Signature::get_algorithm_class knows only
    rsa-sha1 and rsa-sha256, so even with CryptX installed it answers "unsupported
    algorithm" for every Ed25519 signature. Where the module exists, a pass is required.
    """
    import subprocess

    # The file, not a load: a missing CryptX must fail the pass, not turn it off.
    find = 'for (@INC) { exit 0 if -f "$_/Mail/DKIM/Algorithm/ed25519_sha256.pm" } exit 1'
    done = subprocess.run(["perl", "-e", find], capture_output=True, timeout=60)
    return done.returncode == 0


def _round_trip(message: bytes) -> bytes:
    """What a Python program that reads the message and writes it back out sends on."""
    import email
    import email.policy

    return email.message_from_bytes(message, policy=email.policy.default).as_bytes()


@pytest.mark.parametrize("algorithms", [("rsa",), ("rsa", "ed25519")])
def test_outbox_messages_verify_with_dkimpy_and_mail_dkim(
    ws_dir: Path, tmp_path: Path, algorithms: tuple[str, ...]
) -> None:
    env, records = _keys(tmp_path, algorithms)
    ws = Workspace.open(ws_dir, env=env)
    sent_campaign(ws, NOW, "Signed")
    ws.close()
    messages = sorted((ws_dir / "outbox").glob("*.eml"))
    assert messages
    knows_ed25519 = _mail_dkim_knows_ed25519()
    for path in messages:
        signed = path.read_bytes()
        header = signed.split(b"\r\n\r\n", 1)[0]
        # Every header line, the signatures' too, within 78 characters.
        assert max(len(line) for line in header.split(b"\r\n")) <= 78
        for message in (signed, _round_trip(signed)):
            assert _dkimpy_results(message, records) == [True] * len(algorithms)
            perl = _mail_dkim_results(message, records)
            assert len(perl) == len(algorithms)
            # RSA on top, and it passes.
            assert perl[0].startswith("pass rsa-sha256 nl-rsa"), perl
            for line in perl[1:]:
                if knows_ed25519:
                    # Ed25519 below it passes too (Mail::DKIM checks it with CryptX).
                    assert line.startswith("pass ed25519-sha256 nl-ed25519"), perl
                else:
                    # This Mail::DKIM cannot check Ed25519 at all (see
                    # _mail_dkim_knows_ed25519): it must say so, not call it bad.
                    assert line == (
                        "invalid ed25519-sha256 nl-ed25519 "
                        "invalid (unsupported algorithm ed25519-sha256)"
                    ), perl


def test_an_edit_after_signing_fails_with_both_verifiers(tmp_path: Path) -> None:
    env, records = _keys(tmp_path, ("rsa", "ed25519"))
    signers = [
        DkimSigner.from_pem(DOMAIN, "nl-rsa", (tmp_path / "rsa.pem").read_bytes(), "k"),
        DkimSigner.from_pem(DOMAIN, "nl-ed25519", (tmp_path / "ed25519.pem").read_bytes(), "k"),
    ]
    signed = sign_all(signers, _message())
    edited = signed.replace(b"Hello Zo", b"Hallo Zo", 1)
    assert _dkimpy_results(edited, records) == [False, False]
    assert _mail_dkim_results(edited, records)[0].startswith("fail rsa-sha256")


def test_config_check_warns_when_only_ed25519_signs(cli, tmp_path: Path) -> None:
    env, _ = _keys(tmp_path, ("ed25519",))
    cli.env.update(env)
    result = cli("config", "check")
    assert "warning: dkim: only an Ed25519 key signs" in result.stderr
    both, _ = _keys(tmp_path, ("rsa", "ed25519"))
    cli.env.update(both)
    result = cli("config", "check")
    assert "warning" not in result.stderr


def test_a_second_key_that_is_not_ed25519_is_refused(cli, tmp_path: Path) -> None:
    env, _ = _keys(tmp_path, ("rsa", "ed25519"))
    env["NEWSLETTER_DKIM__ED25519_PRIVATE_KEY_FILE"] = env["NEWSLETTER_DKIM__PRIVATE_KEY_FILE"]
    cli.env.update(env)
    result = cli("config", "check", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "rsa.pem: not an Ed25519 key" in result.stderr


# -- signatures made by a helper process ------------------------------------------------


def _both_signers(tmp_path: Path) -> tuple[list[DkimSigner], dict[str, str]]:
    _, records = _keys(tmp_path, ("rsa", "ed25519"))
    signers = [
        DkimSigner.from_pem(DOMAIN, "nl-rsa", (tmp_path / "rsa.pem").read_bytes(), "k"),
        DkimSigner.from_pem(DOMAIN, "nl-ed25519", (tmp_path / "ed25519.pem").read_bytes(), "k"),
    ]
    return signers, records


def _ready_helper(signing: DkimSigning) -> SigningHelper:
    """Its helper once it has loaded the keys: until then each message is signed here."""
    helper = signing.helper
    assert helper is not None  # this machine has more than one core
    deadline = time.monotonic() + 30
    while not helper.ready:
        assert time.monotonic() < deadline, "the signing helper never got ready"
        signing.start(_message(), True)()
        time.sleep(0.01)
    return helper


def _tags(signed: bytes) -> list[list[str]]:
    """The tag names of each DKIM-Signature and their values but t= and b=."""
    headers = signed.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n\t", "")
    found = []
    for line in headers.split("\r\n"):
        if line.startswith("DKIM-Signature:"):
            tags = [t.strip().split("=", 1) for t in line[15:].split(";")]
            found.append([f"{k}={v if k not in ('t', 'b') else ''}" for k, v in tags])
    return found


def test_the_signing_helper_signs_as_this_process_does(tmp_path: Path) -> None:
    signers, records = _both_signers(tmp_path)
    signing = DkimSigning(signers)
    try:
        helper = _ready_helper(signing)
        messages = [_message() for _ in range(6)]  # each with its own boundary
        pending = [signing.start(message, True) for message in messages]  # all in flight
        # Answered in request order, taken in any order (one waiter per sender thread).
        for message, answer in reversed(list(zip(messages, pending, strict=True))):
            signed = answer()
            assert signed.endswith(message)
            assert _dkimpy_results(signed, records) == [True, True]
            assert _tags(signed) == _tags(sign_all(signers, message, True))
        assert helper.asked == helper.heard >= len(messages) and not helper.failed
    finally:
        signing.close()
    assert signing.helper is not None and signing.helper.process is None


def test_a_signing_helper_that_dies_leaves_the_signing_to_this_process(tmp_path: Path) -> None:
    signers, records = _both_signers(tmp_path)
    signing = DkimSigning(signers)
    helper = _ready_helper(signing)
    message = _message()
    in_flight = signing.start(message, True)
    assert helper.process is not None
    helper.process.kill()
    helper.process.wait()
    # The answer it never gave, and every message after it, are signed here instead.
    assert _dkimpy_results(in_flight(), records) == [True, True]
    assert _dkimpy_results(signing.start(message, True)(), records) == [True, True]
    assert helper.failed and helper.process is None


def test_a_signing_helper_that_hangs_is_given_up_and_the_message_signed_here(
    tmp_path: Path,
) -> None:
    signers, records = _both_signers(tmp_path)
    signing = DkimSigning(signers)
    try:
        helper = _ready_helper(signing)
        helper.timeout = 0.5  # of the 30 s a real sender waits
        assert helper.process is not None
        os.kill(helper.process.pid, signal.SIGSTOP)  # alive, never answering
        message = _message()
        in_flight = signing.start(message, True)
        signed = in_flight()  # returns, instead of waiting for ever
        assert _dkimpy_results(signed, records) == [True, True] and signed.endswith(message)
        assert helper.failed and helper.process is None
        # The same answer asked again is the same bytes, read once.
        assert in_flight() == signed
    finally:
        signing.close()


def test_an_answer_asked_twice_is_read_from_the_helper_once(tmp_path: Path) -> None:
    signers, records = _both_signers(tmp_path)
    signing = DkimSigning(signers)
    try:
        helper = _ready_helper(signing)
        first, second = _message(), _message()
        answer_first = signing.start(first, True)
        answer_second = signing.start(second, True)
        heard = helper.heard
        signed = answer_first()
        assert answer_first() == signed and helper.heard == heard + 1
        assert answer_second().endswith(second)
        assert _dkimpy_results(signed, records) == [True, True]
    finally:
        signing.close()


def test_closing_before_the_helper_is_ready_does_not_wait_for_it(tmp_path: Path) -> None:
    signers, _ = _both_signers(tmp_path)
    signing = DkimSigning(signers)
    signing.start(_message(), True)()  # starts the helper; signed here meanwhile
    helper = signing.helper
    assert helper is not None and helper.process is not None and not helper.ready
    process = helper.process
    signing.close()
    assert process.returncode == -signal.SIGKILL  # killed while loading, not waited for


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, 4094, 4095, 20_000])
def test_the_body_hash_fed_in_pieces_is_sha256_of_the_whole(size: int) -> None:
    data = bytes(random.Random(size).randrange(256) for _ in range(size))
    assert sha256_digest(data) == hashlib.sha256(data).digest()


def test_a_message_sent_on_its_own_is_signed_without_starting_a_helper(
    ws_dir: Path, tmp_path: Path
) -> None:
    # A test send or a confirmation goes alone: a helper process would only slow it.
    with SmtpSink() as sink:
        ws, record = _signing_workspace(ws_dir, tmp_path, sink)
        transport = ws.transport()
        try:
            transport.send(Envelope("news@clinic.example.com", "zoe@example.org", _message(), "k"))
            signing = transport.sign
            assert signing.helper is None or signing.helper.process is None
        finally:
            transport.close()
            ws.close()
    (received,) = sink.messages
    assert _verify(received.data, record)
