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
    rustup target add wasm32-wasip2
    cargo build --release --target wasm32-wasip2 --manifest-path guest-drivers/Cargo.toml
    mkdir -p target/drivers
    cp guest-drivers/target/wasm32-wasip2/release/*.wasm target/drivers/

# Every benchmark: sagas vs direct calls, each store, driver costs, registry discovery,
# recovery backlog drain, dtm-host against dtm itself.
bench:
    cargo bench --bench saga
    cargo bench --bench stores
    cargo bench --bench drivers
    cargo bench --bench registry
    cargo bench --bench recovery
    cargo bench --bench vs_dtm

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cd guest-drivers && cargo fmt --check && cargo clippy --target wasm32-wasip2 -- -D warnings
