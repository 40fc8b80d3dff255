//! Compile-fail tests: each file under `tests/ui` misuses `#[derive(Session)]`
//! and its `.stderr` contains the expected errors.
//!
//! The expected output is tied to the compiler version that wrote it. After a
//! toolchain change, regenerate with `TRYBUILD=overwrite cargo test -p
//! session-derive --test ui` and review the diff.

#[test]
fn misuse_is_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
