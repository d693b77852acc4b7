"""Every SQL statement newsletter runs, behind named methods, one module per area.

base.py holds the connection and shared helpers, migrations.py the schema; articles,
subscribers, consent, campaigns, deliveries, leases, events, provider_events, automations,
staff, audit and people each add the queries of their area to ``Store``.

The schema changes only through numbered migrations appended to
``MIGRATIONS`` in migrations.py; an applied migration is never edited. Times are stored as
ISO 8601 text in UTC. Each method that writes commits its own transaction,
so a crash never leaves half of a change behind.
"""

from __future__ import annotations

from newsletter.addresses import mailbox_key  # noqa: F401 - by the store's name for it
from newsletter.store.articles import ArticlesQueries
from newsletter.store.audit import AuditQueries
from newsletter.store.automations import AutomationQueries
from newsletter.store.base import (  # noqa: F401 - names the rest of the package uses
    MIGRATIONS,
    SUPPRESSED,
    erased_key,
    m001_initial,
)
from newsletter.store.campaigns import CampaignsQueries
from newsletter.store.consent import ConsentQueries
from newsletter.store.deliveries import DeliveriesQueries
from newsletter.store.events import EventsQueries
from newsletter.store.leases import LeasesQueries
from newsletter.store.people import PeopleQueries
from newsletter.store.provider_events import ProviderEventsQueries
from newsletter.store.staff import StaffQueries
from newsletter.store.subscribers import SubscribersQueries


class Store(
    ArticlesQueries,
    SubscribersQueries,
    ConsentQueries,
    CampaignsQueries,
    DeliveriesQueries,
    LeasesQueries,
    EventsQueries,
    ProviderEventsQueries,
    StaffQueries,
    AutomationQueries,
    AuditQueries,
    PeopleQueries,
):
    """The SQLite database of one workspace: every query, grouped by area."""
