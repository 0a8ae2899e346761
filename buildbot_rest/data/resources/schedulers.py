"""Placeholder until the module is written."""

RESOURCE_TYPES: list = []
