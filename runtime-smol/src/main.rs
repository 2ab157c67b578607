//! The `shale` program; see `shale --help`

use clap::Parser;

// The program allocates and frees many small buffers per request on several threads (frames,
// entries, replies); the system allocator spent about a tenth of a SET benchmark's CPU time
// in its free lists, this one a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = shale_runtime_smol::cli::Cli::parse();
    if let Err(e) = shale_runtime_smol::cli::run(cli) {
        eprintln!("shale: {e}");
        std::process::exit(2);
    }
}
