//! The `senet` command-line program.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "senet",
    version,
    about = "SENetV2 classifiers on a from-scratch Rust deep-learning framework"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every op: forward against a naive reference, gradients against central differences.
    Selftest {
        /// Device whose kernels are checked (only `cpu` exists so far).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Random cases per op.
        #[arg(long, default_value_t = 4)]
        cases: usize,
        /// Seed of the random shapes and values (the same seed gives the same table).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Selftest {
            device,
            cases,
            seed,
        } => {
            if device != "cpu" {
                eprintln!("error: --device {device}: only `cpu` is available in this build");
                return ExitCode::from(2);
            }
            if cases == 0 {
                eprintln!("error: --cases must be at least 1");
                return ExitCode::from(2);
            }
            let rows = senet::selftest::run(cases, seed);
            print!("{}", senet::selftest::format_table(&rows));
            let failed = rows.iter().filter(|r| !r.passed()).count();
            if failed > 0 {
                println!("{failed} of {} ops FAILED", rows.len());
                ExitCode::FAILURE
            } else {
                println!("all {} ops passed", rows.len());
                ExitCode::SUCCESS
            }
        }
    }
}
