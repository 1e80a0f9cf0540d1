"""Takes RA_TEST_IMPORT_S seconds (default 3) to import, then offers a working machine."""
import os
import time

time.sleep(float(os.environ.get("RA_TEST_IMPORT_S", "3")))

from ra.testing.machines import Counter  # noqa: F401
