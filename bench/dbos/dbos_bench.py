"""The workflow-throughput workload on DBOS Transact, for comparison.

Usage: python dbos_bench.py POSTGRES_URL [N]

Each workflow is a chain of K trivial durable steps (K in 1 and 10), on
PostgreSQL (the system database named in the URL; DBOS creates it):

- overhead: 1,000 steps run one workflow at a time; one sample is the time
  from one step's start to the next one's (or to the end of the workflow
  function, for the last step), so it includes the step's checkpoint write;
- throughput: N workflows (default 1,000) started at once with
  DBOS.start_workflow; steps/s = N x K / (last result - first start).

Prints the same table rows as bench/src/bin/workflow_throughput.rs.
"""

import sys
import time

from dbos import DBOS, DBOSConfig

URL = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000

DBOS(config=DBOSConfig(name="airt-bench", system_database_url=URL, log_level="WARNING"))


@DBOS.step()
def trivial(i: int) -> float:
    return time.perf_counter()


@DBOS.workflow()
def chain(k: int) -> list:
    marks = [time.perf_counter()]
    for i in range(k):
        marks.append(trivial(i))
    marks.append(time.perf_counter())
    return marks


def percentile(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


def measure(k: int) -> None:
    samples = []
    for _ in range(max(1000 // k, 1)):
        marks = chain(k)
        # marks: workflow start, each step's start, workflow end.
        starts = marks[1:]
        samples.extend(b - a for a, b in zip(starts, starts[1:]))
    samples.sort()
    started = time.perf_counter()
    handles = [DBOS.start_workflow(chain, k) for _ in range(N)]
    for handle in handles:
        handle.get_result()
    elapsed = time.perf_counter() - started
    print(
        f"| DBOS Transact {DBOS_VERSION} (PostgreSQL) | {k} | {len(samples)} | "
        f"{percentile(samples, 0.5) * 1000:.2f} ms | {percentile(samples, 0.99) * 1000:.2f} ms | "
        f"{N * k / elapsed:.0f} | {elapsed:.1f} s |",
        flush=True,
    )


if __name__ == "__main__":
    from importlib.metadata import version

    DBOS_VERSION = version("dbos")
    DBOS.launch()
    for k in (1, 10):
        measure(k)
    DBOS.destroy()
