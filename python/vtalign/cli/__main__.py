import sys

from vtalign.cli.dispatch import main

sys.exit(main())
