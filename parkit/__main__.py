"""`python -m parkit ...`: the command line of `parkit.cli`."""
import sys

from parkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
