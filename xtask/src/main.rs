//! Project tasks, run with `cargo xtask <TASK>` (see `cargo xtask help`).
//!
//! This is an ordinary workspace member started through the `xtask` alias in
//! `.cargo/config.toml`. `main` only parses the arguments and dispatches. Each task
//! lives in its own module.

mod bench;
mod flags;
mod process;
mod redis;
mod redis_up;
mod test;

use std::process::ExitCode;

use flags::Task;

fn main() -> ExitCode {
    let task = match flags::parse(std::env::args().skip(1)) {
        Ok(task) => task,
        Err(error) => {
            eprintln!("error: {error}");
            eprintln!();
            eprintln!("{}", flags::HELP);
            return ExitCode::from(2);
        }
    };

    let name = task.name();
    let result = match task {
        Task::Help => {
            println!("{}", flags::HELP);
            return ExitCode::SUCCESS;
        }
        Task::Test(options) => test::run(options),
        Task::Bench(options) => bench::run(options),
        Task::RedisUp => redis_up::run(),
    };

    match result {
        Ok(()) => {
            eprintln!("xtask {name}: ok");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("xtask {name}: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
