"""The composer's helpers on the campaign form: the live preview and image uploads.

The preview renders what is typed (not stored) with the campaign's real
design for the sample subscriber, through the same sandboxed templates and
the same sanitiser as a send; the page shows it in a frame that runs
nothing. An uploaded image is checked by its bytes (``uploads``), kept in
the workspace's uploads folder under the hash of its bytes and served at
``/uploads/`` for the emails to show.
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
from typing import TYPE_CHECKING

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from newsletter import campaigns, uploads
from newsletter.errors import InputError, NewsletterError, os_error_line
from newsletter.mail import load_mail
from newsletter.render import SINGLE_ARTICLE_DESIGN
from newsletter.web.dashboard.campaign_views import (
    as_new_campaign,
    template_names,
    typed_campaign,
)
from newsletter.web.pages import NO_STORE, PREVIEW_HEADERS
from newsletter.web.threads import off_loop
from newsletter.web.wording import for_people

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

log = logging.getLogger(__name__)

# The frame may show remote images and the page may read what it shows (to put an
# error by its field), but nothing in it runs, submits or navigates.
COMPOSER_PREVIEW_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": (
        "sandbox allow-same-origin; default-src 'none'; img-src http: https: data:; "
        "style-src 'unsafe-inline'; font-src http: https: data:; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The page the frame shows when the text cannot be previewed; the script reads its
# message to show it next to the field.
_ERROR_PAGE = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="composer-error" content="{message}"><title>No preview</title></head>'
    '<body style="font-family: sans-serif; padding: 16px; color: #8a1c1c;">'
    "<p>No preview: {message}</p></body></html>"
)


# What a design's thumbnail shows before the workspace has any article.
SAMPLE_TEXT = (
    "## Closed over the holidays\n\n"
    "Our clinic is **closed** from 24 December to 2 January.\n\n"
    "- Emergencies: call us\n- Book online any time\n"
)


class ComposerViews:
    """The live preview of the campaign form, and the upload of an image for it."""

    def __init__(self, d: Dashboard):
        self.d, self.store = d, d.store

    @property
    def routes(self) -> list[Route]:
        d = self.d
        return [
            d.route("/campaigns/compose/preview", self.preview, methods=["POST"]),
            d.route("/campaigns/designs/preview", self.design_preview),
            d.route("/uploads", self.upload, methods=["POST"]),
        ]

    def preview(self, request: Request) -> Response:
        """The email as the campaign form says it now, for the sample subscriber."""
        new = as_new_campaign(typed_campaign(request.state.form))
        try:
            rendered = self._render_draft(new, check_design=True)
        except NewsletterError as exc:
            message = html.escape(for_people(exc).text, quote=True)
            return HTMLResponse(
                _ERROR_PAGE.format(message=message),
                status_code=400,
                headers=COMPOSER_PREVIEW_HEADERS,
            )
        return HTMLResponse(rendered, headers=COMPOSER_PREVIEW_HEADERS)

    def design_preview(self, request: Request) -> Response:
        """A design with sample content, for the thumbnails of the design picker.

        The newest articles (one for the announcement), or a sample text when there
        are none yet, for the sample subscriber.
        """
        name = request.query_params.get("design", "")
        if name == "auto" or name not in template_names(self.d):
            return HTMLResponse("No such design.", status_code=404, headers=PREVIEW_HEADERS)
        ids = self.store.newest_article_ids(1 if name == SINGLE_ARTICLE_DESIGN else 3)
        sample = campaigns.NewCampaign(
            subject="A sample of this design",
            articles=",".join(str(i) for i in ids) or "none",
            template=name,
            tracking=False,
            body="" if ids else SAMPLE_TEXT,
        )
        try:
            rendered = self._render_draft(sample)
        except NewsletterError as exc:
            return HTMLResponse(
                f"<p>{html.escape(for_people(exc).text)}</p>",
                status_code=400,
                headers=PREVIEW_HEADERS,
            )
        return HTMLResponse(rendered, headers=PREVIEW_HEADERS)

    def _render_draft(self, new: campaigns.NewCampaign, check_design: bool = False) -> str:
        """The HTML of a campaign as typed (``campaigns.as_draft``), for the sample subscriber.

        ``check_design``: refuse a design that would not show the typed text (an old
        workspace copy), in the words saving would refuse it with, so the page says so
        next to the text while it is typed, not only on saving.
        """
        ws = self.d.ws
        draft = campaigns.as_draft(self.store, ws.settings, new)
        templates = ws.templates(draft["template"])
        mail = load_mail(self.store, 0, templates, ws.settings, ws.signer, draft=draft)
        rendered = mail.render(campaigns.sample_subscriber(self.store), tracked=False).html
        if check_design:  # after rendering: a design that fails says why first
            campaigns.check_draft_design(templates, draft)
        return rendered

    async def upload(self, request: Request) -> Response:
        """Keep an uploaded image; answer its public address (JSON) or why it was refused."""
        sent = request.state.form.get("image")
        if not isinstance(sent, UploadFile):
            return _refused("Choose an image file to upload.")
        # One byte past the cap is enough to know it is too large.
        data = await sent.read(uploads.MAX_IMAGE_BYTES + 1)
        label = os.path.basename(sent.filename or "") or "the file"
        # Hashing up to 5 MB, the folder's size, the file write and the audit log's
        # row: in a worker thread, off the loop.
        return await off_loop(self._keep, request, data, label)

    def _keep(self, request: Request, data: bytes, label: str) -> Response:
        folder = self.d.ws.root / uploads.FOLDER
        try:
            name, kept = uploads.taken(data, label)
            if not (folder / name).exists():
                uploads.check_room(_folder_bytes(folder), len(kept))
        except InputError as exc:
            return _refused(for_people(exc).text)
        try:
            _write_once(folder, name, kept)
        except OSError as exc:
            # The reason, with the server's path, is for whoever runs the server.
            log.error("uploads: %s could not be kept: %s", name, os_error_line(exc))
            return _refused(
                "The image could not be kept: the server could not write it. Try again "
                "later, or tell whoever looks after the server.",
                500,
            )
        self.d.audit(request, "uploaded an image", name, label)
        url = uploads.public_url(self.d.ws.settings.site.base_url, name)
        return JSONResponse({"url": url, "name": name}, headers=NO_STORE)


def _folder_bytes(folder: os.PathLike[str]) -> int:
    """What the uploads folder holds now, in bytes (nothing before the first upload)."""
    try:
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return 0  # no folder yet; anything worse is for the write to report


def _refused(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


def _write_once(folder: os.PathLike[str], name: str, data: bytes) -> None:
    """Write the image whole or not at all: a reader never gets half a file."""
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name)
    if os.path.exists(target):
        return  # the same bytes, by their hash
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
