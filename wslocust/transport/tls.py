"""
The client TLS context, one per process and verification mode.

Creating an :class:`ssl.SSLContext` per connection costs about 1 ms and 100 KB,
which matters at 10K connections; every ``wss://`` connection of a process
shares one of the two contexts built here.

They are gevent's contexts: the sockets they wrap wait for the TLS handshake and
for reads in the event loop, also where the standard library is not
monkey-patched (Locust patches it; a test or a benchmark may not), instead of
blocking every greenlet of the process.
"""

from __future__ import annotations

import logging
import ssl

from gevent import ssl as gevent_ssl

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
        context = _default_client_context()
        if not verify:
            logger.warning(
                "TLS certificate verification is OFF (WebSocketUser.verify_tls = False): "
                "any server, including an impostor, is accepted"
            )
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _ssl_contexts[verify] = context
    return context


def _default_client_context() -> ssl.SSLContext:
    """A gevent context set up as :func:`ssl.create_default_context` sets up its own."""
    defaults = ssl.create_default_context()
    context = gevent_ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    context.options = defaults.options
    context.verify_flags = defaults.verify_flags  # Python 3.13 adds strict X.509 checks
    context.minimum_version = defaults.minimum_version
    if defaults.keylog_filename:  # SSLKEYLOGFILE, for Wireshark
        context.keylog_filename = defaults.keylog_filename
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return context
