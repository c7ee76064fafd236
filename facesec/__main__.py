"""`python -m facesec ...`: the same command as `facesec ...` (torchrun starts processes this way)."""

import sys

from facesec.cli import main

sys.exit(main())
