#!/usr/bin/env bash
# Calls every RegistryService RPC with grpcurl through server reflection.
# Usage: examples/grpcurl/registry.sh [host:port]   (default 127.0.0.1:50051)
# The registry must run in development auth mode (e.g. `airt up --auth-dev-mode`);
# with JWT auth, replace the two -H headers by -H "authorization: Bearer $TOKEN".
set -euo pipefail
addr=${1:-127.0.0.1:50051}
grpcurl=${GRPCURL:-grpcurl}
here=$(cd "$(dirname "$0")" && pwd)
as_admin=(-H 'x-airt-principal: user:root' -H 'x-airt-roles: admin')
call() { "$grpcurl" -plaintext "${as_admin[@]}" "$@"; }
service=airt.registry.v1.RegistryService

"$grpcurl" -plaintext "$addr" describe "$service"

# Register from the YAML file (sent as spec_text; JSON works too).
spec=$(python3 -c 'import json,sys; print(json.dumps({"spec_text": open(sys.argv[1]).read()}))' \
  "$here/../capabilities/crm.create_account.yaml")
call -d "$spec" "$addr" "$service/RegisterCapability"

call -d '{"capability_id": "crm.create_account"}' "$addr" "$service/GetCapability"
call -d '{"capability_ids": ["crm.create_account", "crm.unknown"]}' "$addr" "$service/BatchGetCapabilities"
call -d '{"id_prefix": "crm.", "page_size": 10}' "$addr" "$service/ListCapabilities"
call -d '{"capability_id": "crm.create_account"}' "$addr" "$service/ListCapabilityVersions"
call -d '{"capability_id": "crm.create_account", "lifecycle": "CAPABILITY_LIFECYCLE_DEPRECATED", "reason": "v2 is coming"}' \
  "$addr" "$service/SetCapabilityLifecycle"

# A server stream: replays every change, then CaughtUp, then waits for more.
call -max-time 2 -d '{"since_revision": 0}' "$addr" "$service/WatchCapabilities" || true
