"""AI-First Runtime from Python.

    import airt
    client = airt.Client.from_env()        # or airt.Client(principal="user:alice")
    run = client.workflows.submit(open("workflow.yaml").read())
    done = client.workflows.wait(run.id)

See the package README for the whole flow (capabilities, policy, approvals,
the audit chain)."""

from . import aio, chain, errors
from .client import Actions, Approvals, Audit, Client, Policy, Registry, Workflows
from .errors import AirtError
from .models import FINISHED, RESTING, ActionResult, Approval, Capability, ChainCheck, Decision, Event, Step, Workflow

__all__ = [
    "ActionResult", "Actions", "AirtError", "Approval", "Approvals", "Audit", "Capability", "ChainCheck", "Client", "Decision",
    "Event", "FINISHED", "Policy", "RESTING", "Registry", "Step", "Workflow", "Workflows", "aio", "chain", "errors",
]
