"""Controller benchmark: gitsail's controller as a separate process against a dev cluster.

    .venv/bin/python -m benchmarks.controller [--apps 100,1000] [--quick]
    .venv/bin/python -m benchmarks.controller_bench ...          # the same (older name)

One module per measurement, so a reader finds each:

- ``latency``: commit → applied through a signed GitHub push webhook, and by polling alone;
- ``drift``: drift → healed (a manual scale, a deleted object) on a quiet controller, and
  during a fleet-wide rollout (the heal must not wait behind the rollout);
- ``raw_ssa``: the physical baseline — the same objects server-side applied through the
  same client (``gitsail.kube.Kube``) with the same concurrency, no engine;
- ``converge``: convergence from empty of N apps in the flux-benchmark shape, from one git
  repository, reported as a ratio to ``raw_ssa`` in the same run;
- ``idle``: controller CPU/RSS and the apiserver requests it causes while nothing changes;
- ``restart``: a restarted controller with every app synced: time to "everything compared"
  and the writes it makes (should be none);
- ``shards``: several controller replicas with ``--shard auto`` sharing the apps, and the
  time to rebalance after one is killed.

Shared parts: ``common`` (names, statistics, ``/proc`` and ``/metrics`` readers, manifests),
``process`` (the controller process), ``fixture`` (``Bench``: cluster, client, git server),
``run`` (the command line).
"""
