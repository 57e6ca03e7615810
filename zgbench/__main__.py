"""``python -m zgbench`` is the ``zgbench`` command."""

import sys

from zgbench.cli import main

sys.exit(main())
