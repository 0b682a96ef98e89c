"""`python -m msabench` is the `msabench` command."""

import sys

from msabench.cli import main

sys.exit(main())
