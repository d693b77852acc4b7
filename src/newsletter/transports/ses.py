"""Amazon SES v2 ``SendEmail`` with the finished MIME message as raw content.

Credentials come only from the standard AWS environment variables, passed
in explicitly so that no shared credentials file or instance role is picked
up by surprise. botocore's own retries are switched off: a retried
``SendEmail`` after a timeout could send the message twice, and retries are
the delivery ledger's job. The delivery key goes along as the message tag
``newsletter_delivery``, which SES puts in every event it publishes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from newsletter import delivery_key
from newsletter.config import Secrets, Settings
from newsletter.errors import AccountError, InDoubtError, PermanentError, TransientError
from newsletter.mime import ascii_domain
from newsletter.transports.base import (
    MIME,
    Envelope,
    NothingToPrepare,
    Outcome,
    outcomes_one_by_one,
)
from newsletter.transports.httpapi import api_address, require

# Tag values may hold only these characters.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
RETRY_CODES = {
    "TooManyRequestsException",
    "LimitExceededException",
    "Throttling",
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
}
RECIPIENT_CODES = {"MessageRejected", "BadRequestException"}


def tag_value(key: str) -> str:
    return _TAG_UNSAFE.sub("_", key)[:256]


# An internationalised mailbox (non-ASCII local part) cannot go through this API.
EAI_REFUSAL: str | None = "which SES does not accept"


class SesTransport(NothingToPrepare):
    name = "ses"
    batch_size = 1
    needs = MIME

    def __init__(
        self,
        *,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        session_token: str = "",
        endpoint_url: str = "",
        configuration_set: str = "",
        timeout: float = 30.0,
        connections: int = 1,
    ):
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token or None,
            region_name=region,
        )
        # A boto3 client is safe to share between threads; its pool matches them.
        self.client = session.client(
            "sesv2",
            endpoint_url=endpoint_url or None,
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
                max_pool_connections=max(1, connections),
            ),
        )
        self.configuration_set = configuration_set

    def send(self, envelope: Envelope) -> str | None:
        """Hand one message to SES; return its MessageId."""
        what = f"ses {envelope.recipient}"
        # SES does not support SMTPUTF8: a non-ASCII local part fails this message
        # alone, and a domain must be in Punycode (the SES Destination reference).
        request: dict[str, Any] = {
            "FromEmailAddress": ascii_domain(envelope.sender),
            "Destination": {"ToAddresses": [api_address(envelope.recipient, "SES", False)]},
            "Content": {"Raw": {"Data": envelope.data}},
            "EmailTags": [{"Name": delivery_key.FIELD, "Value": tag_value(envelope.key)}],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client.send_email(**request)
        except ClientError as exc:
            raise _classify(exc, what, envelope.sender) from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise TransientError(f"{what}: cannot connect to SES ({exc})") from None
        except (ReadTimeoutError, ConnectionClosedError) as exc:
            raise InDoubtError(
                f"{what}: no answer from SES after the request was sent ({type(exc).__name__}); "
                f"it may have accepted the message"
            ) from None
        except NoCredentialsError:
            raise AccountError(
                f"{what}: no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        except ParamValidationError as exc:
            raise AccountError(f"{what}: SES refused the request's form ({exc})") from None
        except BotoCoreError as exc:
            raise InDoubtError(f"{what}: {type(exc).__name__} ({exc})") from None
        return response.get("MessageId")

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        return outcomes_one_by_one(self.send, envelopes)

    def was_sent(self, key: str) -> bool | None:
        return None  # SES offers no lookup by our tag

    def close(self) -> None:
        self.client.close()


def _classify(exc: ClientError, what: str, sender: str) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    problem = f"{what}: {code}: {message}"
    if code in RETRY_CODES or status >= 500 or "quota" in message.lower():
        return TransientError(problem)
    lowered = message.lower()
    about_sender = (
        "not verified" in lowered or "authority to send" in lowered or sender.lower() in lowered
    )
    if code in RECIPIENT_CODES and not about_sender:
        return PermanentError(problem)
    # An unverified sender (or a sandboxed account), a suspended or paused
    # account, missing configuration set, refused credentials: nothing can go,
    # and it is not the subscriber's fault.
    return AccountError(f"{problem}; check the sender identity, ses.region and the AWS account")


def from_settings(settings: Settings, secrets: Secrets) -> SesTransport:
    require(secrets, "ses")
    s = settings.ses
    return SesTransport(
        region=s.region,
        access_key_id=secrets.aws_access_key_id,
        secret_access_key=secrets.aws_secret_access_key,
        session_token=secrets.aws_session_token,
        endpoint_url=s.endpoint_url,
        configuration_set=s.configuration_set,
        timeout=s.timeout,
        connections=settings.delivery.concurrency,
    )
