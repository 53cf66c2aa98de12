"""`python -m seqmnist` runs the command line."""

import sys

from seqmnist.cli import main

sys.exit(main())
