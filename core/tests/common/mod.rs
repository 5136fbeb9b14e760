//! Shared helpers for the integration tests: a deterministic synthetic commune
//! and a store with one officer profile.
#![allow(dead_code)]

use std::path::Path;

use doorstep_core::crypto::KdfParams;
use doorstep_core::record::{Household, Member};
use doorstep_core::store::{Role, Store};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub const PIN: &str = "246810";

const FAMILY: &[&str] = &[
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương",
    "Lý",
];
const MIDDLE: &[&str] = &["Văn", "Hữu", "Đức", "Minh", "Quốc", "Thị", "Ngọc", "Thanh", "Thu", "Hồng"];
const GIVEN: &[&str] =
    &["An", "Bình", "Cường", "Dũng", "Hải", "Hùng", "Long", "Nhung", "Hương", "Thảo", "Trang", "Yến", "Đạt", "Khánh"];
const VILLAGES: &[&str] = &["Thôn Đông", "Thôn Tây", "Bản Mường", "Xóm Chợ"];

/// Opens a store at `path` with one officer profile, unlocked (cheap KDF: tests only).
pub fn officer_store(path: &Path) -> Store {
    let mut store = Store::open(path).unwrap();
    if store.profiles().unwrap().is_empty() {
        store.create_profile("officer", Role::Officer, PIN, None, KdfParams::INSECURE_FOR_TESTS).unwrap();
    }
    store.unlock("officer", PIN, None).unwrap();
    store
}

/// A valid CCCD for a birth year and sex.
pub fn cccd_for(rng: &mut StdRng, year: i32, female: bool) -> String {
    let century = (year / 100 - 19) * 2 + i32::from(female);
    format!("001{century}{:02}{:06}", year % 100, rng.random_range(0..1_000_000))
}

/// `n` households of 1 to 6 residents, each with a distinct name, CCCD and address.
pub fn commune(n: usize, seed: u64) -> Vec<Household> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let size = rng.random_range(1..=6);
            let members = (0..size)
                .map(|k| {
                    let female = rng.random_bool(0.5);
                    let year = rng.random_range(1940..=2010);
                    // A unique last word keeps every name distinct, so a leak is attributable.
                    let name = format!(
                        "{} {} {} Xuân{i:04}{k}",
                        FAMILY[rng.random_range(0..FAMILY.len())],
                        MIDDLE[rng.random_range(0..MIDDLE.len())],
                        GIVEN[rng.random_range(0..GIVEN.len())],
                    );
                    Member {
                        member_id: format!("m{k}"),
                        full_name: name,
                        dob: Some(format!("{year}-{:02}-{:02}", rng.random_range(1..=12), rng.random_range(1..=28))),
                        sex: Some(if female { "F" } else { "M" }.into()),
                        cccd: Some(cccd_for(&mut rng, year, female)),
                        relation: Some(if k == 0 { "head" } else { "child" }.into()),
                        phone: Some(format!("09{:08}", rng.random_range(0..100_000_000))),
                        residence_status: Some("permanent".into()),
                        occupation: Some("Nông dân".into()),
                        document_photo: None,
                        same_person_as: None,
                        verification: None,
                    }
                })
                .collect();
            Household {
                household_id: format!("hh-{i:06}"),
                area_code: "01.001.00001".into(),
                address: format!("Số {} {}, Ngõ Hòa Bình {i}", rng.random_range(1..300), VILLAGES[i % VILLAGES.len()]),
                head_member_id: Some("m0".into()),
                members,
                ..Household::default()
            }
        })
        .collect()
}
