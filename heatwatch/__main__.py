"""``python -m heatwatch``: the same as the ``heatwatch`` command."""

import sys

from heatwatch.app.cli import main

sys.exit(main())
