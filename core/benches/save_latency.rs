//! Latency distribution of saving one 4-member household (validate, Automerge
//! change, seal, commit) into a store of the synthetic commune, and the size
//! on disk per household. Prints percentiles, which criterion does not.
//!
//! `cargo bench -p doorstep-core --bench save_latency`

#[path = "support.rs"]
mod support;

use std::time::Instant;

use doorstep_core::store::Store;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = support::household_count();
    let saves: usize = if std::env::args().any(|a| a == "--test") { 20 } else { 1000 };
    let dir = tempfile::tempdir().unwrap();
    let path = support::store_copy(n, dir.path());
    let t = Instant::now();
    let mut store = Store::open(&path).unwrap();
    store.unlock("officer", support::PIN, None).unwrap();
    let unlock_ms = t.elapsed().as_secs_f64() * 1e3;

    let mut ms = Vec::with_capacity(saves);
    for i in 0..saves {
        let h = support::four_member_household(i);
        let t = Instant::now();
        let (_, out) = store.create_household(&h).unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.issues.is_empty());
    }
    ms.sort_by(f64::total_cmp);
    println!("store of {n} households; {saves} saves of a new 4-member household");
    println!(
        "save latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
        ms.iter().sum::<f64>() / ms.len() as f64
    );
    println!("open + unlock (Argon2id 19 MiB, t=2): {unlock_ms:.1} ms");
    store.raw_connection().execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    let stats = store.storage_stats().unwrap();
    let file = std::fs::metadata(&path).unwrap().len();
    println!(
        "on disk: {} households, file {} bytes = {} bytes/household (sealed document {} B, sealed summary {} B, {:.1} index rows per household)",
        stats.households,
        file,
        file / stats.households,
        stats.chunk_bytes / stats.households,
        stats.summary_bytes / stats.households,
        stats.index_rows as f64 / stats.households as f64
    );
}
