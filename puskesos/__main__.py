"""``python -m puskesos`` runs the ``puskesos`` command."""

import sys

from puskesos.cli import main

sys.exit(main())
