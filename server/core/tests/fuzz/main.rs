//! Property-based fuzzing of every decoder a client's bytes reach: WebSocket frames
//! (`protocol`), Yjs updates and state vectors through the guard and then yrs (`guard`), awareness
//! updates (`awareness`), and the batch codec that stream entries go through (`batch`).
//!
//! Why proptest and not cargo-fuzz: it runs on stable Rust inside `cargo test`, bounded (a few
//! hundred cases per target by default), and longer on demand with `PROPTEST_CASES` (see
//! docs/fuzzing.md). Failures are not persisted to files: the minimal failing input is printed in
//! the test output, to be turned into a regular unit test next to the code it breaks.

mod awareness;
mod batch;
mod guard;
mod mutate;
mod protocol;

use proptest::test_runner::Config;

/// The default config for these targets: `cases` runs by default, `PROPTEST_CASES` overrides it
/// (proptest reads the environment after this), and nothing is written under the source tree.
pub fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}
