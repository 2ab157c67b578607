//! Heap allocations per committed entry, counted outside criterion's timing and printed
//!
//! Needs the [`shale_benches::CountingAllocator`] registered in the bench's main file.

use criterion::Criterion;
use shale_benches::allocations_per_entry;

use super::{BATCHES, PAYLOADS};

/// Prints a table of allocations per committed entry for every batch size and payload size
/// (registered as a criterion target so it runs with the benchmarks; it times nothing)
pub fn table(_: &mut Criterion) {
    eprintln!();
    eprintln!("Heap allocations per committed entry (steady state, 3 nodes, all of them):");
    eprintln!("{:>8} | {:>12} | {:>12}", "batch", "16 B", "1 KiB");
    eprintln!("{:-<8}-+-{:-<12}-+-{:-<12}", "", "", "");
    for batch in BATCHES {
        let cells: Vec<String> = PAYLOADS
            .iter()
            .map(|&len| match allocations_per_entry(batch, len) {
                Some(per_entry) => format!("{per_entry:.3}"),
                None => "n/a".to_owned(),
            })
            .collect();
        eprintln!("{batch:>8} | {:>12} | {:>12}", cells[0], cells[1]);
    }
    eprintln!("(the payload is shared: add 1 per entry for a caller building a fresh Payload)");
    eprintln!();
}
