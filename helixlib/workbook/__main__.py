"""``python -m helixlib.workbook``: see :mod:`helixlib.workbook.build`."""

import sys

from helixlib.workbook.build import main

sys.exit(main())
