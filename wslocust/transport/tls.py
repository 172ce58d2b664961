"""
The client TLS context, one per process and verification mode.

Creating an :class:`ssl.SSLContext` per connection costs about 1 ms and 100 KB,
which matters at 10K connections; every ``wss://`` connection of a process
shares one of the two contexts built here.
"""

from __future__ import annotations

import logging
import ssl

__all__ = ["ssl_context"]

logger = logging.getLogger(__name__)

_ssl_contexts: dict[bool, ssl.SSLContext] = {}


def ssl_context(verify: bool = True) -> ssl.SSLContext:
    """
    Return the process-wide client SSL context.

    Args:
        verify: verify the server certificate and host name (the default).
            ``False`` accepts any certificate and logs a warning once.

    Returns:
        The same context for every call with the same ``verify``.
    """
    context = _ssl_contexts.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            logger.warning(
                "TLS certificate verification is OFF (WebSocketUser.verify_tls = False): "
                "any server, including an impostor, is accepted"
            )
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _ssl_contexts[verify] = context
    return context
