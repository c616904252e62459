"""What the deployment tells the app about itself, read once at import."""

import os

RELEASE = os.environ.get("ROLLOUT_RELEASE_ID", "unknown")
SERVER = os.environ.get("ROLLOUT_ASGI_SERVER", "unknown")
COLOUR = os.environ.get("ROLLOUT_COLOUR", "")
