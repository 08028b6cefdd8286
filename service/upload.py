"""Reading the ``image`` field of a multipart upload into memory."""

from __future__ import annotations

import sys

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from service.decoding import check_content_type
from service.errors import ServiceError

FIELD = "image"


class InMemoryMultiPartParser(MultiPartParser):
    # Starlette spools file parts over 1 MiB to a temporary file on disk; uploads here
    # stay in memory, bounded by BodyLimitMiddleware.
    spool_max_size = sys.maxsize

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ended = False

    def on_end(self) -> None:
        """python-multipart calls this at the closing boundary, and only there."""
        self.ended = True


async def read_image_field(request: Request, max_bytes: int) -> bytes:
    """The bytes of the ``image`` file part, or a ServiceError saying what is wrong with the request."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ServiceError(
            415, "unsupported_type", f"send the image as multipart/form-data in a field named '{FIELD}' (e.g. curl -F {FIELD}=@photo.jpg)"
        )
    parser = InMemoryMultiPartParser(request.headers, request.stream(), max_files=8, max_fields=32)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ServiceError(400, "bad_multipart", f"malformed multipart body: {exc.message}") from None
    except ClientDisconnect:
        raise ServiceError(400, "client_disconnected", "the client went away during the upload") from None
    if not parser.ended:
        await form.close()
        raise ServiceError(400, "truncated_body", "the multipart body is truncated: it ends before its closing boundary")
    try:
        upload = form.get(FIELD)
        if upload is None:
            fields = ", ".join(sorted(set(form.keys()))) or "none"
            raise ServiceError(422, "missing_field", f"no form field '{FIELD}' in the upload (fields sent: {fields})")
        if isinstance(upload, str):
            raise ServiceError(422, "missing_field", f"the form field '{FIELD}' must be a file (curl -F {FIELD}=@photo.jpg)")
        check_content_type(upload.content_type)
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise ServiceError(413, "too_large", f"the image is {len(data)} bytes; the limit is {max_bytes}")
    return data
