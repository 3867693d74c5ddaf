"""``python -m benchmarks.controller``: the controller benchmark's command line."""

from benchmarks.controller.run import main

main()
