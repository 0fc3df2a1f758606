"""Multipart form bodies, read into parts for the sandbox routes."""

import email.parser


def form_parts(body: bytes, content_type: str) -> list[tuple[str | None, str | None, bytes]]:
    """Each part of a ``multipart/form-data`` body as (field name, file name or None, content)."""
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        return []
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_param("filename", header="content-disposition"),
            part.get_payload(decode=True) or b"",
        )
        for part in message.get_payload()
    ]
