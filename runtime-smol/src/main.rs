//! The `shale` program; see `shale --help`

use clap::Parser;

fn main() {
    let cli = shale_runtime_smol::cli::Cli::parse();
    if let Err(e) = shale_runtime_smol::cli::run(cli) {
        eprintln!("shale: {e}");
        std::process::exit(2);
    }
}
