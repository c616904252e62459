"""Settings for the production servers."""
# Settings modules layer on each other with wildcard imports.
# pylint: disable=wildcard-import,unused-wildcard-import

from .base import *  # noqa: F403

# The operator's per-host settings; written at deploy time, not in the repository.
try:
    from .local import *  # noqa: F403
except ImportError:
    pass
