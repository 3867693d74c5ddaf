"""``python -m benchmarks [render|controller|flux|helm|server ...]``: run benchmarks in turn.

With no name, all of them run (``make bench``), each with its defaults; options after the
names are passed to every benchmark, e.g. ``python -m benchmarks controller flux --quick``.
Each writes its own results file under ``benchmarks/results/`` (see README.md).
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = {
    "render": "benchmarks.render_bench",
    "controller": "benchmarks.controller",
    "flux": "benchmarks.flux_bench",
    "helm": "benchmarks.helm_bench",
    "vault-injector": "benchmarks.vault_injector_bench",
    "server": "benchmarks.server_bench",
    "preview": "benchmarks.preview_bench",
    "image-setters": "benchmarks.image_setters_bench",
}


def main(argv: list[str]) -> int:
    names = [a for a in argv if a in BENCHMARKS] or list(BENCHMARKS)
    options = [a for a in argv if a not in BENCHMARKS]
    for name in names:
        print(f"== {name}", flush=True)
        # One process per benchmark: each owns its event loop, cluster and results file.
        code = subprocess.call([sys.executable, "-m", BENCHMARKS[name], *options])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
