import sys

from metre.cli import main

sys.exit(main())
