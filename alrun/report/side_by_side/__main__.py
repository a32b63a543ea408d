"""`python -m alrun.report.side_by_side`."""

import sys

from alrun.report.side_by_side import main

sys.exit(main())
