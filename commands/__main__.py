import sys

from ace.cli import main

sys.exit(main())
