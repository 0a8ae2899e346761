"""Embed buildbot_rest in a Twisted program that has a web site of its own.

The program owns the service tree and the Site; buildbot_rest only provides the resource
mounted at ``/api``. Run ``python embed.py [DATABASE_URL]`` and open
http://127.0.0.1:8020/api/v2/builders, or ``python embed.py --once [DATABASE_URL]`` to fetch
that page once, print it and exit.
"""

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
    once = "--once" in argv
    urls = [a for a in argv if a != "--once"]
    db_url = urls[0] if urls else "sqlite:///embed-demo.sqlite"

    # The program's own services: RestService is one child among others.
    program = MultiService()
    rest = RestService(Config(db_url=db_url, port=None, demo=True,
                              base_url="http://127.0.0.1:8020/"))
    rest.setServiceParent(program)

    # The program's own site, with the REST API mounted at /api.
    root = Resource()
    root.putChild(b"", Data(b"<h1>My build master</h1>", "text/html"))
    root.putChild(b"api", rest.resource())  # opens (and here fills) the database
    site = Site(root)

    program.startService()
    reactor.addSystemEventTrigger("before", "shutdown", program.stopService)
    where = "tcp:0:interface=127.0.0.1" if once else "tcp:8020:interface=127.0.0.1"
    port = await endpoints.serverFromString(reactor, where).listen(site)
    url = f"http://127.0.0.1:{port.getHost().port}/api/v2/builders?field=name&limit=3"

    if not once:
        print(f"serving {url}; Ctrl-C stops")
        await defer.Deferred()  # until the reactor stops
    response = await Agent(reactor).request(b"GET", url.encode())
    body = json.loads(await readBody(response))
    print(response.code, json.dumps(body, sort_keys=True))
    await port.stopListening()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
