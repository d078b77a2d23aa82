"""`python -m orchestrio_client …` is `ork …`."""

import sys

from .cli import main

sys.exit(main())
