//! `cargo xtask test`: formatting, clippy, then the whole test suite against a Redis.

use crate::flags::TestOptions;
use crate::process::{CargoCommand, Steps};
use crate::redis;

/// Runs the checks in order and stops at the first failure.
///
/// A private redis-server started by step 3 is stopped before this returns,
/// whether the tests passed or not.
pub(crate) fn run(options: TestOptions) -> Result<(), String> {
    let total = 2 + usize::from(options.fmt) + usize::from(options.clippy);
    let mut steps = Steps::new("test", total);

    if options.fmt {
        let fmt = CargoCommand::new(&["fmt", "--all", "--", "--check"]);
        steps.start(&fmt.to_string());
        fmt.run("run `cargo fmt --all` to format the files listed above")?;
    }

    if options.clippy {
        let clippy = CargoCommand::new(&["clippy", "--workspace", "--all-targets"]).args(&[
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]);
        steps.start(&clippy.to_string());
        clippy.run("fix the errors and warnings listed above")?;
    }

    steps.start("make sure a Redis is reachable");
    let redis = redis::ensure()?;

    let mut test = CargoCommand::new(&["test", "--workspace", "--all-features"]);
    for (key, value) in redis.env_for_tests() {
        test = test.env(key, &value);
    }
    steps.start(&test.to_string());
    test.run("see the build errors or failing tests above")
}
