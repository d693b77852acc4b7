"""What providers report back about sent mail: one module per provider, below the web.

Each provider module holds all that is that provider's: loading its webhook
key, checking that a request really comes from it, and turning its payload
into events of one shape (``common.event``). The web edge
(``web/webhooks.py``) only reads the request, calls these and answers; the
store records the events.

    common.py    the event shape, JSON and time helpers, the freshness window
    sendgrid.py  ECDSA P-256 / SHA-256 signature over timestamp + body
    mailgun.py   HMAC-SHA256 over timestamp + token
    postmark.py  HTTP Basic auth on the webhook URL
    ses.py       SNS message signatures (versions 1 and 2), SNS hosts only

A payload that is not what the provider sends raises ValueError.
"""
