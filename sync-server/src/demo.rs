//! A demo registry, so that a new user sees a working console at once.
//!
//! It plays the registry lifecycle against a running server: each commune's
//! residents are preloaded from the synthetic commune generator
//! (`bench/gen_households.py`) as the registry import writes them, and each
//! phone is a `doorstep-core` store that enrols with a one-time code, receives
//! its commune over HTTP, verifies a few households at the door and syncs. Two phones in one commune edit the same fields
//! offline (conflicts), and a phone in a neighbouring commune registers
//! people who are already registered (duplicates). Nothing is written
//! around the sync protocol.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use doorstep_core::crypto::KdfParams;
use doorstep_core::record::{Household, Member};
use doorstep_core::store::{Role, Store};
use doorstep_core::sync::HttpTransport;
use doorstep_core::verification::VerificationState;

use crate::registry::problem::check_household;
use crate::state::{AppState, create_enrolment};
use crate::storage::Storage;

/// The district the demo communes belong to.
pub const DEMO_DISTRICT: &str = "01.002";

/// What the demo put on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// Phones enrolled.
    pub devices: usize,
    /// Households synced.
    pub households: usize,
    /// Conflicts waiting for an operator.
    pub conflicts: usize,
    /// Duplicate candidates waiting for an operator.
    pub duplicates: usize,
}

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Phone {
    store: Store,
    transport: HttpTransport,
}

impl Phone {
    fn enrol(
        dir: &std::path::Path,
        name: &str,
        area: &str,
        state: &AppState,
        rt: &tokio::runtime::Handle,
    ) -> DemoResult<Phone> {
        let mut store = Store::open(dir.join(format!("{name}.db")))?;
        let pin = "246810";
        store.create_profile(&format!("officer-{name}"), Role::Officer, pin, None, KdfParams::default())?;
        store.unlock(&format!("officer-{name}"), pin, None)?;
        let code = rt.block_on(create_enrolment(state, area))?;
        let transport = HttpTransport::new(&code.url)?;
        doorstep_core::sync::enrol(&mut store, &transport, &code)?;
        Ok(Phone { store, transport })
    }

    fn sync(&mut self) -> DemoResult<()> {
        doorstep_core::sync::sync(&mut self.store, &self.transport, None, &AtomicBool::new(false))?;
        Ok(())
    }

    fn edit(&mut self, id: &str, f: impl FnOnce(&mut Household)) -> DemoResult<()> {
        let mut doc = self.store.open_household(id)?;
        let mut h = doc.read();
        f(&mut h);
        doc.update(&h, &self.store.editor()?)?;
        self.store.save_household(&mut doc)?;
        Ok(())
    }
}

/// Moves a generated household into `commune`, renumbered.
fn relocate(mut h: Household, commune: &str, n: usize) -> Household {
    h.household_id = format!("{commune}-{n:06}");
    h.area_code = commune.to_string();
    h
}

/// A name without its diacritics, as a hurried officer might type it.
fn plain(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .map(|c| match c {
            'đ' => 'd',
            'Đ' => 'D',
            c => c,
        })
        .collect()
}

/// Seeds the server at `state.public_url` with `communes` communes of the
/// district, sharing out the households of `jsonl` (one per line, as the
/// generator writes them). Blocking: call it off the async workers.
pub fn seed(state: &AppState, jsonl: &str, communes: usize, rt: &tokio::runtime::Handle) -> DemoResult<DemoSummary> {
    let communes = communes.clamp(2, 9);
    let generated: Vec<Household> =
        jsonl.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    if generated.len() < communes * 4 {
        return Err(format!("the demo needs at least {} households", communes * 4).into());
    }
    let dir = tempfile::tempdir()?;
    let codes: Vec<String> = (0..communes).map(|i| format!("{DEMO_DISTRICT}.{:05}", 1 + 3 * i)).collect();
    let per = generated.len() / communes;
    let mut phones = Vec::new();
    let mut summary = DemoSummary::default();
    for (i, code) in codes.iter().enumerate() {
        // The registry's residents of the commune are preloaded (as `doorstep-sync-server import`
        // does), and the commune's phone receives them at its first sync.
        let preload: Vec<Household> = generated[i * per..(i + 1) * per]
            .iter()
            .enumerate()
            .map(|(n, h)| relocate(h.clone(), code, n))
            .filter(|h| check_household(h, code).is_ok())
            .collect();
        summary.households += preload.len();
        rt.block_on(state.storage.import_households(code.clone(), preload, state.now()))?;
        let mut phone = Phone::enrol(dir.path(), &format!("{}", i + 1), code, state, rt)?;
        phone.sync()?;
        phones.push(phone);
    }
    // The first commune's officer has checked a few households with their families.
    for n in 10..15 {
        let id = format!("{}-{n:06}", codes[0]);
        phones[0].store.verify_household(&id, VerificationState::Verified, None, None)?;
    }
    phones[0].sync()?;

    // A second phone in the first commune: the two officers correct the same households offline.
    let mut second = Phone::enrol(dir.path(), "1b", &codes[0], state, rt)?;
    second.sync()?;
    let first_ids: Vec<String> = (0..3).map(|k| format!("{}-{:06}", codes[0], 1 + 2 * k)).collect();
    phones[0].edit(&first_ids[0], |h| h.address = format!("{} (ngõ 3)", h.address))?;
    second.edit(&first_ids[0], |h| h.address = format!("{} (cạnh chợ)", h.address))?;
    phones[0].edit(&first_ids[1], |h| h.members[0].phone = Some("0912000111".into()))?;
    second.edit(&first_ids[1], |h| h.members[0].phone = Some("0988000222".into()))?;
    phones[0].edit(&first_ids[2], |h| h.members[0].full_name = plain(&h.members[0].full_name))?;
    second.edit(&first_ids[2], |h| h.members[0].full_name = format!("{} Anh", h.members[0].full_name))?;
    phones[0].sync()?;
    second.sync()?;
    phones[0].sync()?;

    // Residents of the first commune registered again in the second: one with their CCCD, one typed
    // without diacritics and without a CCCD, one with the day and month of birth swapped.
    let sources: Vec<Household> =
        (0..3).map(|k| relocate(generated[4 + 2 * k].clone(), &codes[0], 4 + 2 * k)).collect();
    for (k, source) in sources.iter().enumerate() {
        let Some(person) = source.members.first() else { continue };
        let mut copy = Member { member_id: format!("dup-m{k}"), relation: Some("head".into()), ..person.clone() };
        match k {
            1 => {
                copy.full_name = plain(&copy.full_name);
                copy.cccd = None;
            }
            2 => {
                copy.dob = copy.dob.as_deref().and_then(|d| {
                    let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
                    use chrono::Datelike;
                    let swapped = chrono::NaiveDate::from_ymd_opt(date.year(), date.day(), date.month())?;
                    Some(swapped.format("%Y-%m-%d").to_string())
                });
            }
            _ => {}
        }
        let h = Household {
            household_id: format!("{}-{:06}", codes[1], 900 + k),
            area_code: codes[1].clone(),
            address: format!("Số {}, Thôn Bắc, xã Tân Lập", 300 + k),
            head_member_id: Some(copy.member_id.clone()),
            members: vec![copy],
            ..Household::default()
        };
        phones[1].store.create_household(&h)?;
        summary.households += 1;
    }
    phones[1].sync()?;

    // Two house photos, synced after their records as a phone does.
    for (k, id) in first_ids.iter().take(2).enumerate() {
        let photo = doorstep_core::photo::synthetic_jpeg(1200 + 200 * k as u32, 900, 85);
        phones[0].store.add_house_photo(id, &photo, doorstep_core::photo::PhotoOptions::default())?;
    }
    phones[0].sync()?;
    doorstep_core::sync::sync_attachments(&phones[0].store, &phones[0].transport, &AtomicBool::new(false))?;
    summary.devices = phones.len() + 1;
    summary.conflicts = rt.block_on(state.storage.conflicts(None))?.iter().filter(|c| c.status == "open").count();
    summary.duplicates = rt.block_on(state.storage.duplicates(None))?.iter().filter(|d| d.status == "open").count();
    Ok(summary)
}

/// Seeds a demo through a server already serving `storage` at `url`. Runs on a plain
/// thread; store calls go to `rt`, the runtime the store was opened on (its pool returns
/// connections on that runtime's tasks, which only a runtime that keeps running drives).
pub fn seed_at(
    storage: Arc<dyn Storage>,
    url: &str,
    jsonl: &str,
    communes: usize,
    rt: &tokio::runtime::Handle,
) -> DemoResult<DemoSummary> {
    let state = AppState::new(storage, url.to_string(), String::new());
    seed(&state, jsonl, communes, rt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_diacritics() {
        assert_eq!(plain("Đỗ Kim Tâm"), "Do Kim Tam");
        assert_eq!(plain("Nguyễn Thị Hồng Nhung"), "Nguyen Thi Hong Nhung");
    }
}
