"""Streaming: CollectionWriter's bytes equal the whole document, and a client that goes
away stops the database generator."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from buildbot_rest.www.encoding import CollectionWriter, dumps

ITEMS = [{"buildid": i, "name": f"b\u00e9{i}", "tags": ["x", "y"], "props": {"a": [1, None]},
          "empty": {}, "none": None} for i in range(57)]


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("plural", ["builds", "steps"])  # before and after "meta"
@pytest.mark.parametrize("n", [0, 1, 57])
def test_writer_equals_whole_document(compact, plural, n):
    items = ITEMS[:n]
    w = CollectionWriter(plural, compact)
    total_first = plural > "meta"
    out = w.opening(n if total_first else None)
    for i in range(0, n, 10):
        out += w.items(items[i:i + 10])
    out += w.items([])
    out += w.closing(None if total_first else n)
    assert out == dumps({plural: items, "meta": {"total": n}}, compact)


@pytest_twisted.ensureDeferred
async def test_client_disconnect_mid_stream_frees_the_db_thread(api):
    """A client that hangs up during a large streamed response: the server stops."""
    from urllib.parse import urlparse

    from twisted.internet.protocol import ClientFactory, Protocol

    got = defer.Deferred()

    class Hangup(Protocol):
        def connectionMade(self):
            self.transport.write(b"GET /api/v2/builds HTTP/1.1\r\nHost: x\r\n"
                                 b"Accept: application/json\r\n\r\n")

        def dataReceived(self, data):
            self.transport.abortConnection()
            if not got.called:
                got.callback(None)

    url = urlparse(api.root)
    factory = ClientFactory.forProtocol(Hangup)
    reactor.connectTCP(url.hostname, url.port, factory)
    await got
    # the pool is free again: a query still runs promptly
    r = await api.get("builds?limit=1")
    assert r.code == 200
