"""DKIM signatures (RFC 6376, RFC 8463) for outgoing mail.

dkimpy does the parts that are easy to get subtly wrong — choosing header
instances and parsing any message not in the shape we build — while the
signature itself is made by OpenSSL through the ``cryptography`` package:
dkimpy's pure-Python RSA signs about 115 messages a second, OpenSSL over a
thousand. For the messages we build (CRLF throughout), splitting the headers
and the relaxed header and body rules are done here with a few bytes
operations: dkimpy's general versions took more time than the RSA signature
itself. Tests hold all three to dkimpy's results, and signatures verify with
dkimpy's own verifier.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from newsletter.errors import ConfigError

# Signed when present. List-Unsubscribe and List-Unsubscribe-Post must be covered
# (RFC 8058) or mailbox providers will not offer one-click unsubscribe.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-id",
    b"feedback-id",
)
# Runs of whitespace that relaxed canonicalisation turns into one space (a lone
# space already is one, so leaving it alone saves most of the substitutions).
_WSP_RUN = re.compile(rb"\t[\t ]*| [\t ]+")
# Without tabs (our messages have none) the runs are of spaces only, and a pattern
# that starts with a literal is found four times as fast.
_SPACE_RUN = re.compile(rb"  +")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def _parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    parsed: tuple[list[list[bytes]], bytes] = dkim.rfc822_parse(message)  # dkimpy is untyped
    return parsed


def split_message(message: bytes, crlf: bool = False) -> tuple[list[list[bytes]], bytes]:
    """Headers as [name, value with its CRLF] and the body, as dkimpy.rfc822_parse gives.

    ``crlf``: the caller has made every line end CRLF (the SMTP transport
    does, before signing), so the scans of the whole message that check it
    are not made again: a third of the signing time of an Ed25519 signature.
    """
    head, found, body = message.partition(b"\r\n\r\n")
    if not found:
        return _parse(message)
    if not crlf and (message.count(b"\n") != message.count(b"\r\n") or b"\r\r" in message):
        return _parse(message)  # not CRLF throughout: the general parser
    headers: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1][1] += line + b"\r\n"
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            return _parse(message)
        headers.append([name, value + b"\r\n"])
    return headers, body


_LINE_BREAK = re.compile(rb"\r?\n")
_HEADER_WSP = re.compile(rb"[\t ]+")


def relaxed_headers(
    headers: list[list[bytes]] | list[tuple[bytes, bytes]],
) -> list[tuple[bytes, bytes]]:
    """RFC 6376 3.4.2, as dkimpy's Relaxed.canonicalize_headers gives it: names in lower
    case, values unfolded, each run of WSP one space, none at either end, then CRLF.

    The same rules with the patterns compiled once, and skipped where a value has
    nothing for them to do: dkimpy's took a third of an Ed25519 signature's time.
    """
    out = []
    for name, value in headers:
        if b"\n" in value:
            value = _LINE_BREAK.sub(b"", value)
        if b"\t" in value or b"  " in value:
            value = _HEADER_WSP.sub(b" ", value)
        out.append((name.lower().rstrip(), value.strip() + b"\r\n"))
    return out


# hashlib lets other threads run while it hashes more than 2 KB at once; a sender's
# threads then wait to get the interpreter back, which costs more than the hash.
_GIL_FREE_CHUNK = 2047


def sha256_digest(data: bytes) -> bytes:
    """SHA-256 of ``data``, fed in pieces small enough to keep the interpreter lock."""
    if len(data) <= _GIL_FREE_CHUNK:
        return hashlib.sha256(data).digest()
    digest, view = hashlib.sha256(), memoryview(data)
    for start in range(0, len(data), _GIL_FREE_CHUNK):
        digest.update(view[start : start + _GIL_FREE_CHUNK])
    return digest.digest()


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4 for a CRLF body: one space for each run of whitespace, none at
    line ends, no empty lines at the end, and an empty body stays empty."""
    runs = _WSP_RUN if b"\t" in body else _SPACE_RUN
    body = runs.sub(b" ", body).replace(b" \r\n", b"\r\n")
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    body = body[:end] + b"\r\n"
    return b"" if body == b"\r\n" else body


@dataclass
class DkimSigner:
    domain: str
    selector: str
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    clock: Callable[[], float] = time.time

    @classmethod
    def from_pem(cls, domain: str, selector: str, pem: bytes, where: str) -> DkimSigner:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{where}: not a PEM private key without a password ({exc})"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{where}: DKIM needs an RSA or Ed25519 key")
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 1024:
            raise ConfigError(
                f"{where}: an RSA key of {key.key_size} bits is too short; "
                f"use 2048 (`newsletter dkim keygen`)"
            )
        return cls(domain, selector, key)

    @property
    def algorithm(self) -> bytes:
        return (
            b"ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else b"rsa-sha256"
        )

    def sign(self, message: bytes, crlf: bool = False) -> bytes:
        """Return the message with a DKIM-Signature header in front (``crlf``: every
        line of it ends CRLF already, see ``split_message``)."""
        headers, body = split_message(message, crlf)
        present = {name.lower() for name, _ in headers}
        include = [h for h in SIGNED_HEADERS if h in present]
        body_hash = base64.b64encode(sha256_digest(relaxed_body(body)))
        fields = [
            (b"v", b"1"),
            (b"a", self.algorithm),
            (b"c", b"relaxed/relaxed"),
            (b"d", self.domain.encode()),
            (b"s", self.selector.encode()),
            (b"t", str(int(self.clock())).encode()),
            (b"h", b":".join(include)),
            (b"bh", body_hash),
            (b"b", b""),
        ]
        # Folded at 78 columns: a longer line is refolded (or turned into encoded
        # words) by software that re-serialises the message, which breaks the
        # signature. The canonical form below unfolds it as a verifier will.
        value = _fold_tags(fields)
        signed = dkim.select_headers(headers, include)
        canonical = relaxed_headers([*signed, (b"DKIM-Signature", value)])
        # The signature header is hashed last, without its trailing CRLF.
        data = b"".join(name + b":" + text for name, text in canonical[:-1])
        data += canonical[-1][0] + b":" + canonical[-1][1].rstrip(b"\r\n")
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = self.key.sign(hashlib.sha256(data).digest())
        b = base64.b64encode(signature)
        folded = b"\r\n\t".join(b[i : i + 72] for i in range(0, len(b), 72))
        return b"DKIM-Signature:" + value + b"\r\n\t" + folded + b"\r\n" + message


# The longest header line, CRLF not counted (RFC 5322 2.1.1).
LINE_LIMIT = 78


def _fold_tags(fields: list[tuple[bytes, bytes]]) -> bytes:
    """The tag list of a DKIM-Signature, folded so no line passes LINE_LIMIT.

    Tags are separated by "; " and a line breaks between tags; the header
    list breaks after a colon, where RFC 6376 allows folding whitespace.
    The empty ``b=`` comes last: the signature is folded in after it.
    """
    pieces: list[bytes] = []
    for i, (name, data) in enumerate(fields):
        end = b";" if i < len(fields) - 1 else b""
        if name == b"h":
            names = data.split(b":")
            parts = [b"h=" + names[0]] + names[1:]
            pieces.extend(
                part + (b":" if j < len(parts) - 1 else end) for j, part in enumerate(parts)
            )
        else:
            pieces.append(name + b"=" + data + end)
    lines: list[bytes] = []
    line = b"DKIM-Signature:"
    for piece in pieces:
        glue = b"" if line.endswith(b":") and not line.endswith(b"Signature:") else b" "
        if len(line) + len(glue) + len(piece) > LINE_LIMIT:
            lines.append(line)
            line, glue = b"\t", b""
        line += glue + piece
    lines.append(line)
    return b"\r\n".join(lines)[len(b"DKIM-Signature:") :]


def sign_all(signers: list[DkimSigner], message: bytes, crlf: bool = False) -> bytes:
    """Sign with every key: the first signer's header ends up on top.

    RFC 8463: an Ed25519 signature alone is "unsupported algorithm" to many
    receivers, so it goes with an RSA one, signed last to be read first.
    ``crlf``: every line of the message ends CRLF already.
    """
    for signer in reversed(signers):
        # A signature header is CRLF throughout, so the signed message stays canonical.
        message = signer.sign(message, crlf)
    return message


def generate_key(algorithm: str = "rsa") -> tuple[bytes, str]:
    """Make a key pair: (private key PEM, the DNS TXT record value to publish)."""
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        record = f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, record


def txt_record_chunks(record: str) -> str:
    """DNS TXT strings are at most 255 characters: quote the record in chunks."""
    return " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))
