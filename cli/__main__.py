"""`python -m cli ...` is `gptflow ...`."""

import sys

from cli.main import main

sys.exit(main())
