"""``python -m bge_integrations.cli``: the same as the ``bge-integrations`` command."""

import sys

from .app import main

sys.exit(main())
