#!/bin/sh
# The OpenBao side of publishing, run once by an OpenBao admin (BAO_ADDR and
# BAO_TOKEN set): the agent may write published tokens; a GitHub repository's
# jobs and a GitLab project's jobs may each log in with their own identity
# (OpenBao's JWT auth) and read one credential's published token, nothing
# else. `bao` is the OpenBao CLI (`vault` takes the same commands).
#
#   ORG_ID=... CLIENT_ID=... GITHUB_REPOSITORY=acme/web GITLAB_PROJECT=acme/web \
#     sh examples/ci/openbao-jwt.sh
set -eu

: "${ORG_ID:?the Snyk org id of the credential}"
: "${CLIENT_ID:?its client id}"
: "${GITHUB_REPOSITORY:=acme/web}"           # owner/name: whose GitHub jobs may read it
: "${GITLAB_PROJECT:=acme/web}"              # group/project: whose GitLab jobs may read it
: "${AUDIENCE:=https://openbao.example.com}" # the aud the jobs ask their platform for
: "${MOUNT:=kv}"                             # the agent's publish.mount (KV v2)
: "${PREFIX:=snyk-tokens}"                   # the agent's publish.prefix
# How OpenBao checks each platform's JWT signatures: the issuer's OIDC
# discovery (the usual case). An OpenBao without access to the issuers takes
# their keys instead: jwt_validation_pubkeys=@/path/keys.pem bound_issuer=...
: "${GITHUB_JWT_CONFIG:=oidc_discovery_url=https://token.actions.githubusercontent.com bound_issuer=https://token.actions.githubusercontent.com}"
: "${GITLAB_JWT_CONFIG:=oidc_discovery_url=https://gitlab.com bound_issuer=https://gitlab.com}"

POLICY="snyk-token-$ORG_ID-$CLIENT_ID"

# 1. The agent writes, withdraws and (after a delete) destroys published
#    tokens: add this policy to the agent's own OpenBao role.
bao policy write snykey-publish - <<POLICY_END
path "$MOUNT/data/$PREFIX/*" { capabilities = ["create", "read", "update"] }
path "$MOUNT/metadata/$PREFIX/*" { capabilities = ["read"] }
path "$MOUNT/destroy/$PREFIX/*" { capabilities = ["update"] }
POLICY_END

# 2. A job may read this one credential's token: its path, nothing else
#    (not the store's records, not the other credentials' tokens).
bao policy write "$POLICY" - <<POLICY_END
path "$MOUNT/data/$PREFIX/$ORG_ID/$CLIENT_ID" { capabilities = ["read"] }
POLICY_END

# 3. GitHub Actions: the OIDC tokens of one repository log in to that policy
#    (add "ref": "refs/heads/main" or "environment": "prod" to bound_claims to
#    narrow it to a branch or an environment). Short-lived OpenBao tokens.
bao auth list -format=json | grep -q '"jwt/"' || bao auth enable -path=jwt jwt
# shellcheck disable=SC2086 # the config is key=value words
bao write auth/jwt/config $GITHUB_JWT_CONFIG
bao write auth/jwt/role/snyk-github - <<ROLE_END
{
  "role_type": "jwt",
  "user_claim": "repository",
  "bound_audiences": ["$AUDIENCE"],
  "bound_claims": {"repository": "$GITHUB_REPOSITORY"},
  "token_policies": ["$POLICY"],
  "token_ttl": "5m",
  "token_max_ttl": "5m"
}
ROLE_END

# 4. GitLab CI: the ID tokens of one project (id_tokens with this aud).
bao auth list -format=json | grep -q '"jwt-gitlab/"' || bao auth enable -path=jwt-gitlab jwt
# shellcheck disable=SC2086
bao write auth/jwt-gitlab/config $GITLAB_JWT_CONFIG
bao write auth/jwt-gitlab/role/snyk-gitlab - <<ROLE_END
{
  "role_type": "jwt",
  "user_claim": "project_path",
  "bound_audiences": ["$AUDIENCE"],
  "bound_claims": {"project_path": "$GITLAB_PROJECT"},
  "token_policies": ["$POLICY"],
  "token_ttl": "5m",
  "token_max_ttl": "5m"
}
ROLE_END

echo "OpenBao is set up: $GITHUB_REPOSITORY (GitHub, role snyk-github) and $GITLAB_PROJECT (GitLab, role snyk-gitlab) may read $MOUNT/$PREFIX/$ORG_ID/$CLIENT_ID"
