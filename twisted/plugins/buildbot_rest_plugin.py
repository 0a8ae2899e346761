# -*- test-case-name: tests.test_scripts -*-
"""The twistd plugin ``buildbot-rest``: ``twistd -n buildbot-rest --demo``.

A drop-in module: kept tiny, since twistd imports every plugin to list them. Its options
and service come from :mod:`buildbot_rest.scripts`, imported only when the plugin is used.
"""

from twisted.application.service import ServiceMaker

buildbot_rest = ServiceMaker(
    "buildbot-rest",
    "buildbot_rest.scripts",
    "Serve Buildbot's REST API v2 over a Buildbot 4.3.0 database",
    "buildbot-rest",
)
