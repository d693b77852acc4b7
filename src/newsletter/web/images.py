"""The images staff uploaded for their campaigns, served to every reader's mail client.

Only names the upload gave (``uploads.STORED_NAME``: a content hash and an
image type) are served, from the workspace's uploads folder and nowhere
else, with the Content-Type of that type, ``nosniff`` and a policy that lets
nothing in them run. The name is the hash of the bytes, so they are cached
for good.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from newsletter import uploads
from newsletter.web.pages import NO_STORE

IMAGE_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "cross-origin",
}


class UploadedImages:
    """``/uploads/<hash>.<type>``: an image uploaded from the dashboard, for emails to show."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.routes = [Route(f"/{uploads.FOLDER}/{{name}}", self.image, methods=["GET", "HEAD"])]

    async def image(self, request: Request) -> Response:
        name = request.path_params["name"]
        content_type = uploads.content_type(name)
        path = self.folder / name
        if content_type is None or not path.is_file():
            return Response("Not found", status_code=404, media_type="text/plain", headers=NO_STORE)
        return FileResponse(path, media_type=content_type, headers=IMAGE_HEADERS)
