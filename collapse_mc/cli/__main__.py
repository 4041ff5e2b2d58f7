"""``python -m collapse_mc.cli``: the same as the ``collapse-mc`` console script."""
import sys

from . import main

sys.exit(main())
