#!/usr/bin/env bash
# The one test command: installs what a fresh Debian machine lacks, then runs every check the
# project holds itself to. Usage: scripts/test.sh
#
# Environment:
#   CARGO_TARGET_DIR  where cargo builds (default: ~/.cache/switchover-target, outside the clone,
#                     so repeated runs and fresh clones reuse the build)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchover-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# No incremental cache: every feature set of the crate would keep its own (it grew to 30 GB).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Install step. scripts/install-deps.sh installs the servers the tests start (Redis, Sentinel,
# Postgres 15, Java 17, DynamoDB Local); this function adds what the checks themselves need.
install_toolchain_parts() {
  if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
  fi
  local comp
  for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
      rustup component add "$comp"
    fi
  done
}

install() {
  install_toolchain_parts
  if [ -x scripts/install-deps.sh ]; then
    scripts/install-deps.sh
  fi
}

step() {
  echo
  echo "==> $*"
  "$@"
}

main() {
  install
  step cargo fmt --all -- --check
  step cargo clippy --all-targets --all-features -- -D warnings
  step cargo clippy --all-targets --no-default-features -- -D warnings
  step cargo test --no-default-features
  step cargo test --all-features
  # The Postgres pool without feature `tls` (its `sslmode` refusals and plaintext warning).
  step cargo test --lib --features postgres postgres::
  # The reduced chaos matrix (8 cells on real servers, about 70 s; needs root, ip, iptables): one
  # loud and the silent faults per backend, and the Postgres read-only fence. The full matrix:
  # cargo run --release --all-features --example chaos_matrix
  step cargo run --release --all-features --example chaos_matrix -- quick
  RUSTDOCFLAGS="-D warnings -D rustdoc::broken_intra_doc_links" \
    step cargo doc --no-deps --all-features
  echo
  echo "scripts/test.sh: all checks passed"
}

main "$@"
