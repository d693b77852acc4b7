"""A campaign's mail is built in one place, complete, and never changed after."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

import newsletter
from newsletter import campaigns, jobs
from newsletter.workspace import Workspace

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PACKAGE = Path(newsletter.__file__).parent


def test_campaign_mail_is_built_by_load_mail_alone() -> None:
    """The package calls CampaignMail(...) once: in mail.load_mail."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name == "CampaignMail":
                    calls.append((path.relative_to(PACKAGE).as_posix(), node.lineno))
    mail_py = ast.parse((PACKAGE / "mail.py").read_text(encoding="utf-8"))
    load_mail = next(
        node
        for node in mail_py.body
        if isinstance(node, ast.FunctionDef) and node.name == "load_mail"
    )
    assert len(calls) == 1, calls
    where, line = calls[0]
    assert where == "mail.py" and load_mail.lineno <= line <= load_mail.end_lineno


def test_every_way_to_a_campaigns_mail_gives_the_same_mail(workspace: Workspace) -> None:
    """The sending process, a sending child, a preview and the web version render alike."""
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    jobs.import_subscriber_folder(workspace, store, NOW)
    campaign_id = campaigns.create(store, workspace.settings, "Hi", "new", None, None, NOW)
    sending, transport = jobs.prepare_send(workspace, store, campaign_id, NOW)
    transport.close()
    assert sending.tracked and sending.link_ids == store.links(campaign_id)
    child_store, child, child_transport = jobs.shard_parts(
        workspace.root, workspace.settings, workspace.secrets, campaign_id, 1
    )
    child_transport.close()
    child_store.close()
    preview = jobs.campaign_mail(workspace, store, campaign_id)
    reader = store.subscribers("confirmed")[0]
    wanted = sending.render(reader)
    assert "/c/" in wanted.html  # its links are tracked
    for mail in (child, preview):
        assert mail.link_ids == sending.link_ids
        assert mail.render(reader) == wanted


def test_a_loaded_mail_cannot_be_patched(workspace: Workspace) -> None:
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    campaign_id = campaigns.create(store, workspace.settings, "Hi", "new", None, None, NOW)
    mail, transport = jobs.prepare_send(workspace, store, campaign_id, NOW)
    transport.close()
    assert mail.link_ids
    with pytest.raises(AttributeError):
        mail.link_ids = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        mail.link_ids["https://example.com/"] = 1  # type: ignore[index]
    assert not hasattr(mail, "set_personal")
