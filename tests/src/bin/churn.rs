//! `churn`: the membership-churn harness. See `tests/src/churn/mod.rs` for what it does; this
//! file only parses flags and maps the outcome to an exit status (0 pass, 1 a check failed,
//! 2 the harness could not run).

use std::process::ExitCode;

use clap::Parser;

#[path = "../churn/mod.rs"]
mod churn;

fn main() -> ExitCode {
    let args = churn::Args::parse();
    match churn::run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("churn: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
