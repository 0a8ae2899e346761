"""Embed buildbot_rest in a Twisted program that has a web site of its own.

The program owns the service tree and the Site; buildbot_rest only provides the resource
mounted at ``/api``. Run ``python embed.py [--port N] [DATABASE_URL]`` and open
http://127.0.0.1:8020/api/v2/builders (port 8020 unless ``--port`` says otherwise; 0 picks
a free one), or ``python embed.py --once ...`` to fetch that page once, print it and exit.
"""

import argparse
import json
import sys

from twisted.application.service import MultiService
from twisted.internet import defer, endpoints, task
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from buildbot_rest.config import Config
from buildbot_rest.service import RestService


async def main(reactor, *argv):
    parser = argparse.ArgumentParser(description="a web site with Buildbot's REST API")
    parser.add_argument("--port", type=int, default=8020, help="port [default: 8020]")
    parser.add_argument("--once", action="store_true", help="fetch one page, print it, exit")
    parser.add_argument("db_url", nargs="?", default="sqlite:///embed-demo.sqlite")
    args = parser.parse_args(argv)

    # The program's own site. It listens first, so that the API's links (its base_url)
    # name the port actually bound, which --port 0 leaves to the system.
    root = Resource()
    root.putChild(b"", Data(b"<h1>My build master</h1>", "text/html"))
    site = Site(root)
    endpoint = endpoints.serverFromString(reactor, f"tcp:{args.port}:interface=127.0.0.1")
    port = await endpoint.listen(site)
    base_url = f"http://127.0.0.1:{port.getHost().port}/"

    # The program's own services: RestService is one child among others.
    program = MultiService()
    rest = RestService(Config(db_url=args.db_url, port=None, demo=True, base_url=base_url))
    rest.setServiceParent(program)
    root.putChild(b"api", rest.resource())  # opens (and here fills) the database
    program.startService()
    reactor.addSystemEventTrigger("before", "shutdown", program.stopService)

    url = f"{base_url}api/v2/builders?field=name&limit=3"
    if not args.once:
        print(f"serving {url}; Ctrl-C stops")
        await defer.Deferred()  # until the reactor stops
    agent = Agent(reactor)
    for page in (f"{base_url}api", url):
        response = await agent.request(b"GET", page.encode())
        body = json.loads(await readBody(response))
        print(response.code, json.dumps(body, sort_keys=True))
    await port.stopListening()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
