"""`python -m tabserve.training`."""

import sys

from tabserve.training.cli import main

sys.exit(main())
