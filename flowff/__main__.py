"""``python -m flowff`` runs the ``flowff`` command."""

import sys

from flowff.cli import main

sys.exit(main())
