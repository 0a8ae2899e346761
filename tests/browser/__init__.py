"""Upstream's web UI in a real browser (headless Chromium) against our standalone server."""
