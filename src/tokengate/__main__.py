"""`python -m tokengate` is the `tokengate` command."""

import sys

from tokengate.cli import main

sys.exit(main())
