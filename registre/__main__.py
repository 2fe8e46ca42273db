"""`python -m registre`: the same as the `registre` console script."""

import sys

from registre.cli import main

sys.exit(main())
