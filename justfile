# Thin recipes: each is a command a person could type.

# Run the service with zero configuration (local PostgreSQL, dev hash key).
run:
    cargo run -p apikeys -- dev

# Every test (needs PostgreSQL on 127.0.0.1:5432).
test:
    cargo test --workspace

# Lints as CI runs them.
lint:
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Drop and recreate the dev database (the next `just run` creates a new dev tenant).
db-reset:
    psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS apikeys_dev WITH (FORCE)'

# Benchmarks: key check (domain) and queries (infra-postgres).
bench:
    cargo bench -p domain -p infra-postgres

# Property tests with many cases: 16 properties x 800,000 cases, over 10^7
# inputs in all (key strings, durations, ids, names, scopes, request bodies,
# the verify body's two readers).
# `cargo test` runs the same properties with 256 cases each.
fuzz:
    PROPTEST_CASES=800000 cargo test --release -p domain --test properties
    PROPTEST_CASES=100000 cargo test --release -p domain --test restriction_properties
    PROPTEST_CASES=800000 cargo test --release -p http-actix --lib properties

# Load the authenticated read path with wrk (apt-get install wrk) against a
# running `just run`: `just load tnt_... sk_live_... key_...`.
load TENANT KEY ID URL="http://127.0.0.1:8080":
    wrk -t2 -c32 -d10s -H "Authorization: Bearer {{KEY}}" -H "X-Tenant-ID: {{TENANT}}" {{URL}}/v1/api-keys/{{ID}}

# Cache-hit `POST /v1/api-keys/verify` against `GET /healthz` on one running
# server (`just run`, or a release `apikeys serve`), alternated ROUNDS times
# for SECS seconds each, as docs/performance.md ("Load") measures them:
# prints each pair's requests/s and ratio, then the median ratio.
# `just load-verify tnt_... sk_live_...`.
load-verify TENANT KEY ROUNDS="10" SECS="4" URL="http://127.0.0.1:8080":
    #!/usr/bin/env bash
    set -euo pipefail
    script=$(mktemp --suffix .lua)
    trap 'rm -f "$script"' EXIT
    printf 'wrk.method = "POST"\nwrk.body = [[{"key": "%s"}]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-Tenant-ID"] = "%s"\n' '{{KEY}}' '{{TENANT}}' > "$script"
    rate() { wrk -t2 -c32 -d{{SECS}}s "$@" | awk '/Requests\/sec/ {print $2}'; }
    ratios=()
    for round in $(seq {{ROUNDS}}); do
        healthz=$(rate {{URL}}/healthz)
        verify=$(rate -s "$script" {{URL}}/v1/api-keys/verify)
        ratio=$(awk -v v="$verify" -v h="$healthz" 'BEGIN {printf "%.3f", v / h}')
        ratios+=("$ratio")
        echo "round $round: healthz $healthz/s, verify $verify/s, ratio $ratio"
    done
    printf '%s\n' "${ratios[@]}" | sort -n | awk '{r[NR] = $1} END {m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2; printf "median ratio over %d rounds: %.3f\n", NR, m}'

# The API-tooling check: the OpenAPI documents validate, schemathesis (pinned,
# in target/api-check/venv) finds 0 failures against the service on a fresh
# database, and generated Python and TypeScript clients build cleanly.
# `just api-check 200` for more examples per operation (default 50).
api-check EXAMPLES="50":
    bash .ci/api-check {{EXAMPLES}}
