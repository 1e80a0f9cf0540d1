"""``python -m ra.node ARGS``: the node daemon's command line (:func:`ra.node.daemon.main`)."""
import sys

from ra.node.daemon import main

sys.exit(main(sys.argv[1:]))
