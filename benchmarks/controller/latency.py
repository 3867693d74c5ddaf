"""commit → applied (webhook and polling), and drift → healed (``drift``) on the same
controller, one small app per repetition."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

import httpx

from benchmarks.controller.common import (
    DRIFT_DEPLOYMENT,
    NS_PREFIX,
    _configmap,
    _summary,
    application,
    github_push,
    log,
    wait_for,
)
from benchmarks.controller.drift import quiet_heal
from benchmarks.controller.fixture import Bench
from gitsail.dev.gitserver import Workdir

# -- 1–3: latency ----------------------------------------------------------------------


async def latency_phase(bench: Bench, reps: int) -> dict[str, Any]:
    kube = bench.kube
    bench.git.create_repo("latency")
    repo = bench.git.url("latency")
    work = Workdir(repo)
    ns_lat = f"{NS_PREFIX}latency"
    # One app per drift repetition: each measures a first heal, as a real incident would
    # be. Repeated drift on one app is slowed on purpose by the self-heal backoff
    # (2 s x 3^n until 330 s pass without drift), which would measure the backoff instead.
    drift_apps = [(f"drift{i}", f"{NS_PREFIX}drift{i}") for i in range(2 * reps)]
    revision = await asyncio.to_thread(
        work.commit_and_push,
        {
            "latency/cm.yaml": _configmap("lat", v="0"),
            "drift/deployment.yaml": DRIFT_DEPLOYMENT,
            "drift/cm.yaml": _configmap("drift-cm", a="1"),
        },
        "initial",
    )
    ctl = bench.controller("webhook", resync=120, jitter=60)
    await ctl.start()
    await bench.create_apps(
        [application("lat", repo, "latency", ns_lat)]
        + [application(name, repo, "drift", ns) for name, ns in drift_apps]
    )
    await bench.wait_apps(["lat", *(name for name, _ in drift_apps)], revision, limit=180)

    async def value_is(v: str) -> bool:
        cm = await kube.get("v1", "ConfigMap", "lat", ns_lat)
        return cm is not None and (cm.get("data") or {}).get("v") == v

    counter = iter(range(1, 10**6))
    webhook: list[float] = []
    push: list[float] = []
    ack: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(reps):
            value = f"w{next(counter)}"
            t0 = time.perf_counter()
            sha = await asyncio.to_thread(
                work.commit_and_push, {"latency/cm.yaml": _configmap("lat", v=value)}, value
            )
            t_pushed = time.perf_counter()
            body, headers = github_push(repo, sha, ["latency/cm.yaml"])
            resp = await client.post(f"{ctl.url}/api/webhook", content=body, headers=headers)
            t_ack = time.perf_counter()
            assert resp.status_code == 200, resp.text
            assert resp.json()["refreshed"], resp.text
            await wait_for(lambda v=value: value_is(v), limit=60, what="webhook apply")  # type: ignore[misc]
            done = time.perf_counter()
            webhook.append(done - t_pushed)
            push.append(t_pushed - t0)
            ack.append(t_ack - t_pushed)
            await asyncio.sleep(1)
    log(f"webhook: median {statistics.median(webhook):.2f}s over {reps}")

    # 3. drift → healed (drift.py)
    drift = await quiet_heal(kube, drift_apps, reps)
    await ctl.stop()

    # 2. polling only
    poll_resync = 5.0
    poller = bench.controller("polling", resync=poll_resync, jitter=0)
    await poller.start()
    polling: list[float] = []
    for _ in range(reps):
        # A random phase against the poll timer, as a real commit would have.
        await asyncio.sleep(random.uniform(0, poll_resync))  # noqa: S311
        value = f"p{next(counter)}"
        await asyncio.to_thread(
            work.commit_and_push, {"latency/cm.yaml": _configmap("lat", v=value)}, value
        )
        polling.append(
            await wait_for(lambda v=value: value_is(v), limit=60, what="polling apply")  # type: ignore[misc]
        )
    log(f"polling: median {statistics.median(polling):.2f}s over {reps}")
    await poller.stop()
    work.close()
    await bench.clean()
    return {
        "webhook": {
            "what": "git push done -> live ConfigMap shows the new value (webhook POSTed "
            "right after the push)",
            **_summary(webhook),
            "push_median_s": round(statistics.median(push), 3),
            "webhook_ack_median_s": round(statistics.median(ack), 3),
            "controller": "--resync 120 --jitter 60",
        },
        "polling": {
            "what": "git push done -> live ConfigMap shows the new value, no webhook",
            **_summary(polling),
            "controller": f"--resync {poll_resync:g} --jitter 0",
            "interval_s": poll_resync,
        },
        **drift,
    }
