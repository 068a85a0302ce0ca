"""Redaction of values that often carry credentials, for logs, errors, status and ``config check``."""

from __future__ import annotations

from urllib.parse import urlsplit


def mask_url(url: str) -> str:
    """Scheme, host and port only: a webhook's path or query is often its token (``/hooks/T0/B0/XXXX``, ``?key=``).

    ``https://user:pw@hooks.example.com/services/T/B/X?k=v`` → ``https://hooks.example.com/…``.
    A URL with nothing secret in it (``http://127.0.0.1:8086``) is returned unchanged.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL, hidden)"
    if not parts.scheme or not host:
        return "(URL hidden)"
    hidden = bool(parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"))
    return f"{parts.scheme}://{host}{port}/…" if hidden else f"{parts.scheme}://{host}{port}"
