import sys

from helixlib.commands.main import main

if __name__ == "__main__":  # not when multiprocessing re-imports the parent's main module
    sys.exit(main())
