"""email.send against a real SMTP server (aiosmtpd) on 127.0.0.1: STARTTLS and implicit TLS with a
certificate made for the test, AUTH (refused: permanent), a connection dropped mid-DATA
(transient, may have applied), the Message-ID, Bcc, and addresses checked before sending."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from tests.actions.helpers import event, execute
from worker.actions.base import step_key, step_type
from worker.actions.errors import StepError
from worker.actions.mail import smtp_server
from worker.actions.services import Services
from worker.rules.checker import CheckConfig
from worker.rules.loader import load_text
from worker.settings import Settings
from worker.state.base import StateStore

USER = "ppw@firm.example"
PASSWORD = "s3cret-Pa55word"
FROM = "Smith & Jones <ppw@firm.example>"
MESSAGE = {"to": "client@example.com", "subject": "Your matter", "text": "Hello from the firm."}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost): ``(cert.pem, key.pem)``."""
    where = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class Inbox:
    """What the server accepted, and how it should misbehave."""

    messages: list[Envelope] = field(default_factory=list)
    drop_in_data: bool = False
    logins: list[tuple[str, str]] = field(default_factory=list)
    #: recipient -> the reply to its RCPT TO (default 250), and the reply to DATA
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is None:
            envelope.rcpt_tos.append(address)
            return "250 OK"
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        if self.drop_in_data:
            assert server.transport is not None
            server.transport.abort()  # the message arrived; the reply never leaves
            return "250 OK"
        self.messages.append(envelope)
        return "250 OK queued"

    def parsed(self, index: int = -1) -> EmailMessage:
        content = self.messages[index].content
        assert isinstance(content, bytes)
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message


def _authenticator(inbox: Inbox) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        inbox.logins.append((data.login.decode(), mechanism))
        ok = data.login.decode() == USER and data.password.decode() == PASSWORD
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535 itself

    return check


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Smtp:
    inbox: Inbox
    port: int
    cafile: Path


def _serve(certificate: tuple[Path, Path], *, implicit: bool) -> Iterator[Smtp]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = _free_port()
    tls: dict[str, Any] = (
        {"ssl_context": context, "auth_require_tls": False}  # aiosmtpd counts only STARTTLS as TLS
        if implicit
        else {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    )
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator(inbox),
        server_hostname="127.0.0.1",
        **tls,
    )
    controller.start()
    try:
        yield Smtp(inbox, port, cert)
    finally:
        controller.stop()


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[Smtp]:
    yield from _serve(certificate, implicit=False)


@pytest.fixture
def smtps_server(certificate: tuple[Path, Path]) -> Iterator[Smtp]:
    yield from _serve(certificate, implicit=True)


def _services(store: StateStore, url: str, **values: Any) -> Services:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        smtp_url=SecretStr(url),
        smtp_from=values.pop("smtp_from", FROM),
        smtp_timeout=5.0,
        **values,
    )
    return Services(settings, store)


def _url(smtp: Smtp, *, scheme: str = "smtp", password: str = PASSWORD, cafile: bool = True) -> str:
    query = f"?cafile={smtp.cafile}" if cafile else ""
    return f"{scheme}://ppw%40firm.example:{password}@127.0.0.1:{smtp.port}{query}"


def _no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text


def test_starttls_login_and_send(sqlite_store: StateStore, starttls_server: Smtp) -> None:
    svc = _services(sqlite_store, _url(starttls_server))
    params = {
        **MESSAGE,
        "cc": "Paralegal <para@firm.example>, client@example.com",
        "bcc": ["archive@firm.example"],
        "reply_to": "billing@firm.example",
        "html": "<p>Hello from <b>the firm</b>.</p>",
    }
    ev = event("c", "m-7")
    result = execute(svc, "email.send", params, connection="c", ev=ev, rule_id="notify", step_id="mail")
    [envelope] = starttls_server.inbox.messages
    assert [login for login, _mechanism in starttls_server.inbox.logins] == [USER]
    assert envelope.mail_from == "ppw@firm.example"
    assert envelope.rcpt_tos == ["client@example.com", "para@firm.example", "archive@firm.example"]
    message = starttls_server.inbox.parsed()
    assert message["From"] == FROM and message["To"] == "client@example.com"
    assert message["Cc"] == "Paralegal <para@firm.example>, client@example.com"
    assert message["Bcc"] is None, "Bcc is the envelope's only"
    assert message["Reply-To"] == "billing@firm.example" and message["Subject"] == "Your matter"
    assert message["Auto-Submitted"] == "auto-generated"
    expected_id = f"<{step_key(ev.id, 'notify', 'mail')}@ppw>"
    assert message["Message-ID"] == expected_id
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    assert text.get_content().strip() == "Hello from the firm." and "<b>the firm</b>" in html.get_content()
    assert result.output == {
        "message_id": expected_id,
        "accepted": ["client@example.com", "para@firm.example", "archive@firm.example"],
        "refused": [],
    }
    assert (
        result.request["smtp"] == f"127.0.0.1:{starttls_server.port}" and result.request["tls"] == "starttls"
    )
    _no_password(json.dumps([result.request, result.response]))


def test_the_message_id_is_the_same_on_every_attempt_of_a_step(
    sqlite_store: StateStore, starttls_server: Smtp
) -> None:
    svc = _services(sqlite_store, _url(starttls_server))
    ev = event("c", "m-8")
    for step_id in ("mail", "mail", "other"):
        execute(
            svc, "email.send", MESSAGE, connection="c", ev=ev, step_id=step_id, uncertain=step_id == "mail"
        )
    first, again, other = (starttls_server.inbox.parsed(i)["Message-ID"] for i in range(3))
    assert first == again != other


def test_implicit_tls(sqlite_store: StateStore, smtps_server: Smtp) -> None:
    svc = _services(sqlite_store, _url(smtps_server, scheme="smtps"))
    result = execute(svc, "email.send", MESSAGE, connection="c")
    assert len(smtps_server.inbox.messages) == 1 and result.request["tls"] == "implicit"


def test_refused_login_is_permanent_and_never_shows_the_password(
    sqlite_store: StateStore, starttls_server: Smtp
) -> None:
    wrong = "not-the-Pa55word"
    svc = _services(sqlite_store, _url(starttls_server, password=wrong))
    with pytest.raises(StepError) as caught:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert not caught.value.transient and "535" in caught.value.message
    assert "login" in caught.value.message
    assert wrong not in str(caught.value) and not starttls_server.inbox.messages
    assert wrong in svc.settings.secret_values(), "the scrubbers know the password"


def test_an_untrusted_certificate_is_permanent(sqlite_store: StateStore, starttls_server: Smtp) -> None:
    svc = _services(sqlite_store, _url(starttls_server, cafile=False))
    with pytest.raises(StepError) as caught:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert not caught.value.transient and "not trusted" in caught.value.message
    _no_password(caught.value.message)


def test_a_connection_dropped_in_data_is_transient_and_may_have_applied(
    sqlite_store: StateStore, starttls_server: Smtp
) -> None:
    starttls_server.inbox.drop_in_data = True
    svc = _services(sqlite_store, _url(starttls_server))
    with pytest.raises(StepError) as caught:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert caught.value.transient and caught.value.may_have_applied
    _no_password(caught.value.message)


def test_a_4xx_reply_is_transient_and_a_5xx_permanent(
    sqlite_store: StateStore, starttls_server: Smtp
) -> None:
    svc = _services(sqlite_store, _url(starttls_server))
    inbox = starttls_server.inbox
    inbox.rcpt_replies["client@example.com"] = "450 4.2.1 Mailbox busy, try later"
    with pytest.raises(StepError) as busy:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert busy.value.transient and not busy.value.may_have_applied and "450" in busy.value.message
    inbox.rcpt_replies["client@example.com"] = "550 5.1.1 No such user"
    with pytest.raises(StepError) as unknown:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert not unknown.value.transient and "550" in unknown.value.message
    inbox.rcpt_replies.clear()
    inbox.data_reply = "451 4.3.0 Queue full"
    with pytest.raises(StepError) as full:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert full.value.transient and "451" in full.value.message
    inbox.data_reply = "554 5.7.1 Message rejected as spam"
    with pytest.raises(StepError) as spam:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert not spam.value.transient and "554" in spam.value.message
    assert not inbox.messages


def test_recipients_refused_beside_accepted_ones_are_reported(
    sqlite_store: StateStore, starttls_server: Smtp
) -> None:
    starttls_server.inbox.rcpt_replies["gone@example.com"] = "550 5.1.1 No such user"
    svc = _services(sqlite_store, _url(starttls_server))
    result = execute(svc, "email.send", {**MESSAGE, "cc": "gone@example.com"}, connection="c")
    [envelope] = starttls_server.inbox.messages
    assert envelope.rcpt_tos == ["client@example.com"]
    assert result.output["accepted"] == ["client@example.com"] and result.output["refused"] == [
        "gone@example.com"
    ]
    assert "550" in result.response["refused_replies"]["gone@example.com"]


def test_no_server_listening_is_transient_and_did_not_apply(sqlite_store: StateStore) -> None:
    svc = _services(sqlite_store, f"smtp://u:{PASSWORD}@127.0.0.1:{_free_port()}")
    with pytest.raises(StepError) as caught:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert caught.value.transient and not caught.value.may_have_applied
    _no_password(caught.value.message)


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({**MESSAGE, "to": "bob@"}, "to: 'bob@' is not an email address"),
        ({**MESSAGE, "cc": ["ok@firm.example", "not an address"]}, "cc[1]: 'not an address'"),
        ({**MESSAGE, "bcc": "a@firm.example, nope"}, "bcc: 'nope' is not an email address"),
        ({**MESSAGE, "reply_to": "x@localhost"}, "reply_to: 'x@localhost'"),
        ({**MESSAGE, "from": "a@firm.example, b@firm.example"}, "from: one address only"),
        ({**MESSAGE, "to": "a@firm.example\nBcc: spy@evil.example"}, "to: 'a@firm.example\\nBcc"),
        ({**MESSAGE, "to": []}, "to: no address"),
    ],
)
def test_addresses_are_checked_before_sending_and_errors_name_the_field(
    sqlite_store: StateStore, starttls_server: Smtp, params: dict[str, Any], said: str
) -> None:
    svc = _services(sqlite_store, _url(starttls_server))
    with pytest.raises(ValidationError) as caught:
        execute(svc, "email.send", params, connection="c")
    assert said in str(caught.value)
    assert not starttls_server.inbox.messages


def test_templates_are_checked_once_rendered() -> None:
    model = step_type("email.send").params
    model.model_validate({**MESSAGE, "to": "{{ record.email }}", "cc": ["{{ env.CC }}", "a@firm.example"]})


def test_a_bad_default_from_is_permanent_and_named(sqlite_store: StateStore, starttls_server: Smtp) -> None:
    svc = _services(sqlite_store, _url(starttls_server), smtp_from="ppw-at-firm")
    with pytest.raises(StepError) as caught:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert not caught.value.transient and "PPW_SMTP_FROM" in caught.value.message


def test_without_smtp_url_the_step_fails_for_good(sqlite_store: StateStore) -> None:
    svc = Services(Settings(_env_file=None), sqlite_store)  # type: ignore[call-arg]
    with pytest.raises(StepError) as caught:
        execute(svc, "email.send", MESSAGE, connection="c")
    assert not caught.value.transient and "PPW_SMTP_URL" in caught.value.message


def test_smtp_urls() -> None:
    plain = smtp_server("smtp://u%40x:p%2Fw@mail.example")
    assert (plain.host, plain.port, plain.tls, plain.username, plain.password) == (
        "mail.example",
        587,
        "starttls",
        "u@x",
        "p/w",
    )
    assert smtp_server("smtps://mail.example").port == 465
    assert smtp_server("smtp://relay.lan?starttls=false").tls == "none"
    assert smtp_server("smtp://relay.lan?starttls=false").port == 25
    with pytest.raises(StepError) as caught:
        smtp_server(f"imap://u:{PASSWORD}@mail.example")
    _no_password(caught.value.message)
    settings = Settings(_env_file=None, smtp_url=SecretStr("smtp://u:p%40ssword@h"))  # type: ignore[call-arg]
    assert {"p%40ssword", "p@ssword"} <= set(settings.secret_values())
    assert "ssword" not in repr(settings)


def test_rules_check_warns_when_smtp_is_not_configured_where_it_runs() -> None:
    rule = """\
- id: welcome
  trigger: {resource: contacts, on: created}
  steps:
    - type: email.send
      with: {to: "{{ record.email }}", subject: "Welcome", text: "Hello {{ record.first_name }}"}
"""
    unset = CheckConfig.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    [warning] = load_text(rule, "mail.yaml", config=unset).diagnostics
    assert warning.severity == "warning" and "PPW_SMTP_URL" in warning.message
    configured = Settings(_env_file=None, smtp_url=SecretStr("smtp://h"))  # type: ignore[call-arg]
    assert load_text(rule, "mail.yaml", config=CheckConfig.from_settings(configured)).diagnostics == []
