"""``python -m realign_core.cli ...`` = ``realign ...``."""
import sys

from realign_core.cli.main import main

sys.exit(main())
