"""`python -m vpkit ...`, the same as the `vpkit` command; torchrun needs it: `torchrun ... -m vpkit train 4`."""
import sys

from vpkit.cli import main

sys.exit(main())
