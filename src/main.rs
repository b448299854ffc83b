//! The `senet` command-line program.
use clap::{Parser, Subcommand};
use senet::tensor::Device;
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
    /// Check every op: on the CPU, forward against naive loops and gradients against central
    /// differences; on a GPU, forward and gradients against the CPU.
    Selftest {
        /// `cpu`, `gpu` (best adapter of any kind, lavapipe included), `auto` (a hardware GPU,
        /// else the CPU) or a substring of an adapter name (see `senet devices`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Random cases per op.
        #[arg(long, default_value_t = 4)]
        cases: usize,
        /// Seed of the random shapes and values (the same seed gives the same table).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// List the GPU adapters wgpu sees, and which one `--device auto` and `--device gpu` pick.
    Devices,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Selftest {
            device,
            cases,
            seed,
        } => selftest(&device, cases, seed),
        Command::Devices => devices(),
    }
}

fn selftest(device: &str, cases: usize, seed: u64) -> ExitCode {
    if cases == 0 {
        eprintln!("error: --cases must be at least 1");
        return ExitCode::from(2);
    }
    let device = match Device::parse(device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --device {device}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("device: {}", device.describe());
    let rows = senet::selftest::run(cases, seed, device);
    print!("{}", senet::selftest::format_table(&rows, device));
    let failed = rows.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        println!("{failed} of {} ops FAILED", rows.len());
        ExitCode::FAILURE
    } else {
        println!("all {} ops passed", rows.len());
        ExitCode::SUCCESS
    }
}

fn devices() -> ExitCode {
    use senet::gpu::{adapters, DeviceRequest};
    let all = adapters();
    if all.is_empty() {
        println!("no GPU adapters (Vulkan, Metal or DX12); on Linux, Mesa's lavapipe gives a software one: apt-get install mesa-vulkan-drivers");
    }
    for a in &all {
        println!(
            "{}: {} | backend {} | type {} | driver {} | max buffer {} MiB, max storage binding {} MiB, {} storage buffers per stage, {} KiB workgroup memory, {} invocations per workgroup",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            if a.driver.is_empty() { "?" } else { &a.driver },
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_storage_buffers_per_shader_stage,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup
        );
    }
    let pick = |r: DeviceRequest| match r.choose() {
        Ok(Some(a)) => format!("adapter {} ({a})", a.index),
        Ok(None) => {
            "the CPU backend (no hardware GPU; a software adapter is slower than the CPU backend)"
                .to_string()
        }
        Err(e) => format!("nothing: {e}"),
    };
    println!("--device auto picks {}", pick(DeviceRequest::Auto));
    println!("--device gpu picks {}", pick(DeviceRequest::Gpu));
    ExitCode::SUCCESS
}
