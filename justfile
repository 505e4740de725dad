# dtm-host tasks. `just` lists them.

default:
    @just --list

# Run the coordinator on the embedded store with the sample config.
run:
    cargo run --release --bin dtm-host -- -c config.yml

# Run every test (the same command CI runs).
test:
    cargo test --workspace

# Build every guest driver in guest-drivers/ for wasm32-wasip2 into target/drivers/.
build-drivers:
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p target/drivers
    for manifest in guest-drivers/*/Cargo.toml; do
        [ -e "$manifest" ] || { echo "no guest drivers yet"; exit 0; }
        cargo build --release --target wasm32-wasip2 --manifest-path "$manifest"
    done
    find guest-drivers -path '*/wasm32-wasip2/release/*.wasm' -exec cp {} target/drivers/ \;

# The saga benchmark: dtm-host vs direct branch calls, in one run.
bench:
    cargo bench --bench saga

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
