"""Settings for the production servers."""

from .base import *  # noqa: F403

# The operator's per-host settings; written at deploy time, not in the repository.
try:
    from .local import *  # noqa: F403
except ImportError:
    pass
