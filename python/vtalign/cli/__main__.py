import sys

from vtalign.cli.main import main

sys.exit(main())
