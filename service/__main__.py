"""`python -m tabserve.service`."""

import sys

from tabserve.service.cli import main

sys.exit(main())
