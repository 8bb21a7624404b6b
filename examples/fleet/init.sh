#!/bin/sh
# One-shot set-up of the trial cluster: initialise bao-1 with one key share,
# unseal the three nodes, mount KV v2 at kv/, and write a token with the
# snykey policy for the agents. A real cluster keeps the unseal key and the
# root token elsewhere (or uses auto-unseal) and gives agents AppRole or
# Kubernetes auth instead of a token file.
set -eu
export BAO_ADDR=http://bao-1:8200
until bao status -format=json >/dev/null 2>&1 || [ $? -eq 2 ]; do sleep 1; done
if [ ! -f /shared/init.json ]; then
  bao operator init -key-shares=1 -key-threshold=1 -format=json > /shared/init.json
fi
KEY=$(tr -d '\n ' < /shared/init.json | sed 's/.*"unseal_keys_b64":\["\([^"]*\)".*/\1/')
for n in 1 2 3; do
  until BAO_ADDR=http://bao-$n:8200 bao operator unseal "$KEY" >/dev/null 2>&1; do sleep 1; done
done
BAO_TOKEN=$(tr -d '\n ' < /shared/init.json | sed 's/.*"root_token":"\([^"]*\)".*/\1/')
export BAO_TOKEN
until bao secrets list >/dev/null 2>&1; do sleep 1; done
bao secrets enable -version=2 -path=kv kv 2>/dev/null || true
printf 'path "kv/*" { capabilities = ["create", "read", "update", "delete", "list"] }\n' \
  | bao policy write snykey -
bao token create -policy=snykey -period=24h -field=token > /shared/agent-token
chmod 0644 /shared/agent-token
