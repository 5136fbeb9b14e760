//! Criterion benchmarks of the store on the synthetic commune (10,000 households).
//!
//! `cargo bench -p doorstep-core --bench store`

#[path = "support.rs"]
mod support;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use doorstep_core::store::Store;

fn benches(c: &mut Criterion) {
    let n = support::household_count();
    let dir = tempfile::tempdir().unwrap();
    let path = support::store_copy(n, dir.path());
    let sample = support::commune(n.min(50));
    let cccd = sample[7].members[0].cccd.clone().unwrap();
    let name = sample[7].members[0].full_name.clone();
    let plain_name = doorstep_core::identity::normalize_name(&name);

    let mut group = c.benchmark_group(format!("store_{n}"));
    group.bench_function("open_unlock_list_first_page", |b| {
        b.iter(|| {
            let mut store = Store::open(&path).unwrap();
            store.unlock("officer", support::PIN, None).unwrap();
            let page = store.list_households(0, 20).unwrap();
            assert_eq!(page.len(), 20.min(n));
        })
    });
    let mut store = Store::open(&path).unwrap();
    store.unlock("officer", support::PIN, None).unwrap();
    group.bench_function("list_first_page_unlocked", |b| {
        b.iter(|| assert_eq!(store.list_households(0, 20).unwrap().len(), 20.min(n)))
    });
    group.bench_function("search_cccd", |b| b.iter(|| assert!(!store.search_cccd(&cccd).unwrap().is_empty())));
    group.bench_function("search_name_without_diacritics", |b| {
        b.iter(|| assert!(!store.search_name(&plain_name).unwrap().is_empty()))
    });
    // The worst case: one common family name matches thousands of households (capped at 500 opened).
    group.bench_function("search_name_common_family_name", |b| {
        b.iter(|| assert!(!store.search_name("nguyen").unwrap().is_empty()))
    });
    let mut i = 0;
    group.bench_function("save_household_4_members", |b| {
        b.iter_batched(
            || {
                i += 1;
                support::four_member_household(i)
            },
            |h| assert!(store.create_household(&h).unwrap().1.issues.is_empty()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("edit_and_save_one_field", |b| {
        let mut doc = store.open_household(&sample[3].household_id).unwrap();
        let editor = store.editor().unwrap();
        let mut k = 0;
        b.iter(|| {
            k += 1;
            let mut h = doc.read();
            h.members[0].phone = Some(format!("09{k:08}"));
            doc.update(&h, &editor).unwrap();
            store.save_household(&mut doc).unwrap();
        })
    });
    group.finish();
}

criterion_group! {
    name = store;
    config = Criterion::default().sample_size(50);
    targets = benches
}
criterion_main!(store);
