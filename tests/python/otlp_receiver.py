"""An OTLP/gRPC trace receiver for CI, and the check of one workflow's trace.

    otlp_receiver.py serve ADDR SPANS.jsonl   # keeps every span received, one JSON line each
    otlp_receiver.py check SPANS.jsonl TRACE_ID

`check` waits (at most 20 s) until the trace holds what one workflow that
paused for an approval shows when the three services export to a collector:
the submission, two runs of the workflow (before and after the approval) in
the same trace, its steps, and the registry's and the policy's answers.
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def text(value):
    kind = value.WhichOneof("value")
    return str(getattr(value, kind)) if kind else ""


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def Export(self, request, context):
        lines = []
        for resource_spans in request.resource_spans:
            service = next(
                (text(kv.value) for kv in resource_spans.resource.attributes if kv.key == "service.name"),
                "",
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    lines.append(json.dumps({
                        "service": service,
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "attributes": {kv.key: text(kv.value) for kv in span.attributes},
                    }))
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()


def serve(addr, path):
    open(path, "w", encoding="utf-8").close()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(path), server)
    server.add_insecure_port(addr)
    server.start()
    print(f"OTLP receiver on {addr}", flush=True)
    server.wait_for_termination()


def problems(spans, trace_id):
    traced = [s for s in spans if s["trace_id"] == trace_id]
    found = []
    submit = [s for s in traced if s["name"] == "rpc" and s["attributes"].get("method", "").endswith("/SubmitWorkflow")]
    if not submit:
        found.append("no SubmitWorkflow span")
    runs = [s for s in traced if s["name"] == "workflow.run"]
    if len(runs) < 2:
        found.append(f"{len(runs)} workflow.run spans, want the run before and after the approval")
    elif submit and any(r["parent_span_id"] != submit[0]["span_id"] for r in runs):
        found.append("a run is not a child of the submission")
    if not any(r["attributes"].get("to") == "COMPLETED" for r in runs):
        found.append("no run ended COMPLETED")
    run_ids = {r["span_id"] for r in runs}
    steps = [s for s in traced if s["name"] == "workflow.step"]
    if not steps or any(s["parent_span_id"] not in run_ids for s in steps):
        found.append("steps missing or not children of a run")
    services = {s["service"] for s in traced}
    for service in ("workflow-service", "registry-service", "policy-service"):
        if service not in services:
            found.append(f"no span from {service}")
    return found


def check(path, trace_id):
    deadline = time.monotonic() + 20
    while True:
        with open(path, encoding="utf-8") as lines:
            spans = [json.loads(line) for line in lines if line.strip()]
        found = problems(spans, trace_id)
        if not found:
            names = sorted({f'{s["service"]} {s["name"]}' for s in spans if s["trace_id"] == trace_id})
            print(f"trace {trace_id}: " + ", ".join(names))
            return 0
        if time.monotonic() > deadline:
            print(f"trace {trace_id}: " + "; ".join(found), file=sys.stderr)
            return 1
        time.sleep(0.2)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
