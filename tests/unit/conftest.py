"""The collection importable as Ansible imports it (ansible_collections.django_asgi.rollout), for the plugins
that import its module_utils, in this process and in the modules the tests run as Ansible runs them."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = Path(tempfile.mkdtemp(prefix="rollout-collections-"))
(COLLECTIONS / "ansible_collections" / "django_asgi").mkdir(parents=True)
(COLLECTIONS / "ansible_collections" / "django_asgi" / "rollout").symlink_to(ROOT)
sys.path.insert(0, str(COLLECTIONS))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COLLECTIONS), os.environ.get("PYTHONPATH")]))
