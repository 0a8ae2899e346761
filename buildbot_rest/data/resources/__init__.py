"""One module per resource type; each lists its classes in ``RESOURCE_TYPES``."""
