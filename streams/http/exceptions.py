"""Errors of the HTTP endpoint, raised at its boundary."""

from __future__ import annotations

from streams.exceptions import SegstreamError


class HttpServeError(SegstreamError):
    """The status server cannot listen (port taken, address not local, ...)."""
