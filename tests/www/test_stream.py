"""Streaming: CollectionWriter's bytes equal the whole document, and a client that goes
away stops the database generator (more in ``test_disconnect.py``, whose large database
and helpers are used here)."""

from __future__ import annotations

import pytest
import pytest_twisted

from buildbot_rest.www.encoding import CollectionWriter, dumps
from tests.www.test_disconnect import (  # noqa: F401 - fixtures
    A_LITTLE,
    Client,
    Server,
    assert_stopped_early,
    big_data,
    big_postgresql,
    big_sqlite,
    connect,
    path_of,
    server,
    within,
)

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


@pytest.mark.parametrize("what", ["collection", "raw log"])
@pytest_twisted.ensureDeferred
async def test_client_disconnect_mid_stream_frees_the_db_thread(
        server: Server, what: str) -> None:  # noqa: F811 - the fixture imported above
    """A client that reads a little of a large streamed answer, then hangs up. The answer
    really streams (the database has ~30 MB of builds and a ~32 MB log, far more than one
    batch and than the sockets' buffers), from a pool of one connection: the stream stops
    before reading the whole answer, and a new request is answered promptly."""
    client = await connect(server.port, Client(path_of(server, what),
                                               hang_up_after=A_LITTLE))
    try:
        await within(client.closed, "the client hanging up after a little of the answer")
        assert client.response()[0] == 200
        await assert_stopped_early(server.watch.only())
        await server.answers_promptly()
    finally:
        client.hang_up()
