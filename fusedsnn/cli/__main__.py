"""``python -m fusedsnn.cli ARGS`` is ``fusedsnn ARGS``."""

import sys

from fusedsnn.cli import main

sys.exit(main())
