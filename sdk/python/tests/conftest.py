"""The tests talk to a running stack in development auth mode, found through
the same variables as the CLI (`AIRT_REGISTRY_ADDR`, `AIRT_POLICY_ADDR`,
`AIRT_WORKFLOW_ADDR`; default `airt up`'s ports), e.g.:

    airt up --auth-dev-mode &
    pip install './sdk/python[test]' && pytest sdk/python/tests
"""

import uuid

import pytest

import airt

POLICY = """
default: DENY
rules:
  - {id: no-deletes, when: {capability: io.fs.delete}, decision: DENY, reason: Nothing is deleted here}
  - {id: allow-the-rest, decision: ALLOW, reason: Low-risk workspace work}
"""


@pytest.fixture(scope="session")
def admin():
    with airt.Client.from_env(principal="user:root", roles="admin") as client:
        client.policy.put(POLICY)
        yield client


@pytest.fixture()
def alice(admin):
    with admin.as_principal("user:alice") as client:
        yield client


@pytest.fixture()
def unique():
    return uuid.uuid4().hex[:10]
