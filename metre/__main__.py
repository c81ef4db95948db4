import signal
import sys

# A SIGTERM before the roles install their own handler (while Python imports): nothing has
# started yet, so stopping at once is the clean shutdown, with exit code 0.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

from metre.cli import main  # noqa: E402

sys.exit(main())
