//! `doorstep`: try the Doorstep core on a computer, without a phone.
//!
//! Create a profile, add households (from a CCCD card's QR image too), import
//! a synthetic commune, list, search, validate, and see conflicts.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use doorstep_core::crypto::KdfParams;
use doorstep_core::form::{FormDefinition, residence_survey};
use doorstep_core::identity::{Cccd, ChipCardQr, PersonKey, Sex};
use doorstep_core::qr;
use doorstep_core::record::{Household, HouseholdDoc, Member, make_id};
use doorstep_core::store::{ListedHousehold, MoveOutcome, PhotoSize, Role, SearchHit, Store};
use doorstep_core::sync::protocol::EnrolmentCode;
use doorstep_core::sync::{HttpTransport, SyncObserver, SyncProgress};
use doorstep_core::transfer::{BundleSelection, FRAME_PAYLOAD_BYTES, FrameReceiver, to_frames};
use doorstep_core::verification::{ReviewStatus, VerificationState};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::AtomicBool;

#[derive(Parser)]
#[command(name = "doorstep", version, about = "Offline household survey store: try the Doorstep core from a terminal.")]
struct Cli {
    /// The store file.
    #[arg(long, env = "DOORSTEP_STORE", default_value = "doorstep.db", global = true)]
    store: PathBuf,
    /// The profile to unlock.
    #[arg(long, env = "DOORSTEP_PROFILE", default_value = "officer", global = true)]
    profile: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Officer,
    Helper,
}

#[derive(Subcommand)]
enum Command {
    /// Create a profile. The PIN comes from DOORSTEP_PIN or a prompt. Adding a second
    /// profile needs an officer's PIN too (DOORSTEP_OFFICER_PIN or a prompt).
    CreateProfile {
        /// Name shown on the unlock screen.
        label: String,
        /// Role.
        #[arg(long, value_enum, default_value = "officer")]
        role: RoleArg,
        /// Officer who authorises a new profile (not needed for the first).
        #[arg(long, default_value = "officer")]
        by: String,
        /// Cheap key derivation, for demos and tests only.
        #[arg(long, hide = true)]
        insecure_fast_kdf: bool,
    },
    /// List the profiles on this device.
    Profiles,
    /// Change the profile's PIN (new PIN from DOORSTEP_NEW_PIN or a prompt). Re-encrypts nothing.
    ChangePin,
    /// Add a household whose head is read from a CCCD card's QR (an image) or typed in.
    Add {
        /// Area code, e.g. 01.001.00001.
        #[arg(long)]
        area: String,
        /// Address.
        #[arg(long)]
        address: String,
        /// Photo (PNG or JPEG) of the head's chip CCCD card.
        #[arg(long)]
        card_image: Option<PathBuf>,
        /// The head's name, when there is no card.
        #[arg(long, required_unless_present = "card_image")]
        name: Option<String>,
        /// Date of birth YYYY-MM-DD, when there is no card.
        #[arg(long)]
        dob: Option<String>,
        /// Sex M or F, when there is no card.
        #[arg(long)]
        sex: Option<String>,
        /// CCCD, when there is no card.
        #[arg(long)]
        cccd: Option<String>,
    },
    /// Import households, one JSON object a line (the synthetic commune's format).
    Import {
        /// The .jsonl file.
        file: PathBuf,
    },
    /// List households, newest first.
    List {
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Rows a page.
        #[arg(long, default_value_t = 20)]
        page_size: u32,
    },
    /// Search by CCCD number or by name (diacritics optional).
    Search {
        /// A CCCD number or words of a name.
        query: String,
    },
    /// Print a household as JSON.
    Show {
        /// Household id.
        id: String,
    },
    /// Set one field: `address`, or `members/<member id>/<field>`.
    Set {
        /// Household id.
        id: String,
        /// Field path.
        path: String,
        /// New value.
        value: String,
    },
    /// Mark a household verified after checking it with the family (and each resident), or
    /// as needing correction; with --member, one resident only.
    Verify {
        /// Household id.
        id: String,
        /// Found something wrong that must be corrected (say what with --note).
        #[arg(long)]
        needs_correction: bool,
        /// What needs correcting.
        #[arg(long)]
        note: Option<String>,
        /// One resident's member id.
        #[arg(long)]
        member: Option<String>,
    },
    /// Households an operator returned for correction, with the operator's comment.
    Returned,
    /// Move a household to another area. Within this phone's areas it moves at once (sent at
    /// the next sync); outside them it becomes a transfer request for an operator to decide.
    Move {
        /// Household id.
        id: String,
        /// The area to move it to, e.g. 01.001.00002.
        #[arg(long)]
        to: String,
        /// Why (shown to the operator who decides a transfer).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// This phone's transfer requests and where they stand (as of the last sync).
    Transfers,
    /// Move one resident into another household held on this phone (same commune or
    /// another): "moved out" in the old household, "moved in" in the new one, linked.
    MoveResident {
        /// The household the resident leaves.
        from: String,
        /// The resident's member id.
        member: String,
        /// The household the resident joins.
        #[arg(long)]
        to: String,
        /// When, YYYY-MM-DD (default: today).
        #[arg(long)]
        date: Option<String>,
        /// Relation to the new household's head (head, spouse, child, parent, grandchild, sibling, other).
        #[arg(long)]
        relation: Option<String>,
    },
    /// Validate a household against the residence survey.
    Validate {
        /// Household id.
        id: String,
    },
    /// Show fields with concurrent values, with authors and times.
    Conflicts {
        /// Household id.
        id: String,
    },
    /// Settle a conflict with a value.
    Resolve {
        /// Household id.
        id: String,
        /// Field path, as `conflicts` prints it.
        path: String,
        /// The value to keep.
        value: String,
    },
    /// Merge a household from another device's store file (offline hand-over).
    /// That store's profile PIN comes from DOORSTEP_OTHER_PIN or a prompt.
    MergeFrom {
        /// The other store file.
        other_store: PathBuf,
        /// The other store's profile.
        #[arg(long, default_value = "officer")]
        other_profile: String,
        /// Household id.
        id: String,
    },
    /// Look for possible duplicates of a person.
    Duplicates {
        /// Full name.
        #[arg(long)]
        name: String,
        /// Date of birth YYYY-MM-DD.
        #[arg(long)]
        dob: Option<String>,
        /// Sex M or F.
        #[arg(long)]
        sex: Option<String>,
        /// CCCD number.
        #[arg(long)]
        cccd: Option<String>,
    },
    /// Check a CCCD number.
    CheckCccd {
        /// The number.
        number: String,
    },
    /// Write a QR code PNG holding some text (to make a test card: the chip payload).
    QrEncode {
        /// The text.
        text: String,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Read every QR code in a PNG or JPEG.
    QrDecode {
        /// The image.
        image: PathBuf,
    },
    /// Print the built-in residence survey, or check a form definition file.
    Form {
        /// A form definition to check instead.
        #[arg(long)]
        check: Option<PathBuf>,
    },
    /// Sizes of what is stored.
    Stats,
    /// Enrol this store with a sync server, from a photo of its enrolment QR code.
    Enrol {
        /// PNG or JPEG of the enrolment QR code.
        qr_image: PathBuf,
    },
    /// Sync with the server: push local changes, pull the area's.
    Sync,
    /// Add (or replace) a household's house photo, or with --member a resident's document
    /// photo: JPEG or PNG, stripped of metadata, downsized to --max-side pixels, with a
    /// thumbnail; stored sealed.
    PhotoAdd {
        /// Household id.
        household: String,
        /// The photo file.
        image: PathBuf,
        /// A resident's document photo (identity card, birth certificate…) instead of the house's.
        #[arg(long)]
        member: Option<String>,
        /// Long side of the stored photo, in pixels.
        #[arg(long, default_value_t = 1600)]
        max_side: u32,
    },
    /// Write a household's house photo or a resident's document photo (or its thumbnail) to a file, fetching it from the
    /// server first when this device does not hold it.
    PhotoGet {
        /// Household id.
        household: String,
        /// A resident's document photo instead of the house's.
        #[arg(long)]
        member: Option<String>,
        /// Where to write the JPEG.
        #[arg(long)]
        out: PathBuf,
        /// The thumbnail instead of the photo.
        #[arg(long)]
        thumb: bool,
    },
    /// This device's id and public bundle key, and the devices of its area it can exchange
    /// bundles with (as the last sync listed them).
    Devices,
    /// Export households to another device of the area, sealed to it: as a file, and/or as
    /// PNG images of an animated QR sequence.
    BundleExport {
        /// The receiving device's id (see `doorstep devices`).
        #[arg(long)]
        to: String,
        /// Households to send (repeat the flag).
        #[arg(long = "household")]
        households: Vec<String>,
        /// Instead: every household of this area with changes the server has not acknowledged.
        #[arg(long)]
        dirty_area: Option<String>,
        /// The bundle file to write.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A folder for the QR frames, frame-0000.png and on.
        #[arg(long)]
        qr_dir: Option<PathBuf>,
    },
    /// Import a bundle: from its file, or from photos of its QR frames (any order, repeats
    /// and other pictures are ignored; says which frames are still missing).
    BundleImport {
        /// The bundle file, or images of its QR frames.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Verify a household verification slip offline, from a photo of its QR code,
    /// with the key this device received at enrolment.
    VerifySlip {
        /// PNG or JPEG of the slip's QR code.
        qr_image: PathBuf,
    },
}

fn secret(var: &str, prompt: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(v) => Ok(v),
        Err(_) => rpassword::prompt_password(prompt).with_context(|| format!("set {var} or run in a terminal")),
    }
}

fn open_unlocked(cli: &Cli) -> Result<Store> {
    let mut store = Store::open(&cli.store).with_context(|| format!("opening {}", cli.store.display()))?;
    let pin = secret("DOORSTEP_PIN", &format!("PIN for {}: ", cli.profile))?;
    store.unlock(&cli.profile, &pin, None)?;
    Ok(store)
}

fn print_listed(rows: &[ListedHousehold]) {
    for row in rows {
        match &row.summary {
            Some(s) => println!(
                "{}  {}  {:<28}  {} member(s)  {}{}",
                row.household_id,
                row.area_code,
                s.head_name.as_deref().unwrap_or("(no head)"),
                s.members.len(),
                s.address,
                match (s.issue_count, s.conflict_count) {
                    (0, 0) => String::new(),
                    (i, c) => format!("  [{i} issue(s), {c} conflict(s)]"),
                }
            ),
            None => println!("{}  {}  CORRUPT: the summary failed to open", row.household_id, row.area_code),
        }
    }
}

fn print_hits(hits: &[SearchHit]) {
    if hits.is_empty() {
        println!("no match");
    }
    for hit in hits {
        for id in &hit.member_ids {
            if let Some(m) = hit.household.members.iter().find(|m| &m.member_id == id) {
                println!(
                    "{}  {:<30} {}  {}  CCCD {}  — {}",
                    hit.household.household_id,
                    m.full_name,
                    m.dob.as_deref().unwrap_or("?"),
                    m.sex.as_deref().unwrap_or("?"),
                    m.cccd.as_deref().unwrap_or("-"),
                    hit.household.address
                );
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::CreateProfile { label, role, by, insecure_fast_kdf } => {
            let mut store = Store::open(&cli.store)?;
            let kdf = if *insecure_fast_kdf { KdfParams::INSECURE_FOR_TESTS } else { KdfParams::default() };
            if !store.profiles()?.is_empty() {
                let pin = secret("DOORSTEP_OFFICER_PIN", &format!("PIN of officer {by}: "))?;
                store.unlock(by, &pin, None)?;
            }
            let pin = secret("DOORSTEP_PIN", &format!("New PIN for {label}: "))?;
            let role = match role {
                RoleArg::Officer => Role::Officer,
                RoleArg::Helper => Role::Helper,
            };
            let p = store.create_profile(label, role, &pin, None, kdf)?;
            println!("created profile {} ({:?}) on device {}", p.label, p.role, store.device_id());
        }
        Command::Profiles => {
            let store = Store::open(&cli.store)?;
            for p in store.profiles()? {
                println!("{}  {:?}", p.label, p.role);
            }
        }
        Command::ChangePin => {
            let mut store = Store::open(&cli.store)?;
            let old = secret("DOORSTEP_PIN", "Current PIN: ")?;
            store.unlock(&cli.profile, &old, None)?;
            let new = secret("DOORSTEP_NEW_PIN", "New PIN: ")?;
            store.change_pin(&old, &new, None)?;
            println!("PIN changed; no data was re-encrypted");
        }
        Command::Add { area, address, card_image, name, dob, sex, cccd } => {
            let mut store = open_unlocked(&cli)?;
            let member_id = make_id("m")?;
            let mut head = match card_image {
                Some(path) => {
                    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                    let card = qr::read_chip_card(&bytes)?;
                    println!("read card: {} {} born {}", card.cccd, card.full_name, card.dob);
                    Member::from_chip_card(&card, member_id.clone())
                }
                None => Member {
                    member_id: member_id.clone(),
                    full_name: name.clone().unwrap_or_default(),
                    dob: dob.clone(),
                    sex: sex.clone(),
                    cccd: cccd.clone(),
                    ..Member::default()
                },
            };
            head.relation = Some("head".into());
            head.residence_status = Some("permanent".into());
            let key = PersonKey {
                full_name: head.full_name.clone(),
                dob: head.dob.as_deref().and_then(chrono_date),
                sex: head.sex.as_deref().and_then(Sex::parse),
                cccd: head.cccd.clone(),
                phone: head.phone.clone(),
            };
            for d in store.find_duplicates(&key, None)? {
                println!(
                    "possible duplicate: {} in {} (match probability {:.2}; {})",
                    d.full_name,
                    d.household_id,
                    d.score.probability,
                    d.score.explanation_lines().join(", ")
                );
            }
            let h = Household {
                household_id: make_id("hh")?,
                area_code: area.clone(),
                address: address.clone(),
                head_member_id: Some(member_id),
                members: vec![head],
                ..Household::default()
            };
            let (_, outcome) = store.create_household(&h)?;
            println!("added household {}", h.household_id);
            for i in outcome.issues {
                println!("  issue: {}: {} / {}", i.path, i.message.vi, i.message.en);
            }
        }
        Command::Import { file } => {
            let mut store = open_unlocked(&cli)?;
            let text = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
            let lines: Vec<String> = std::io::BufReader::new(text).lines().collect::<Result<_, _>>()?;
            let bar = ProgressBar::new(lines.len() as u64);
            bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} households, {per_sec}, eta {eta}")?);
            let (mut saved, mut with_issues, mut skipped) = (0, 0, 0);
            for (n, line) in lines.iter().enumerate() {
                bar.inc(1);
                if line.trim().is_empty() {
                    continue;
                }
                let h: Household = match serde_json::from_str(line) {
                    Ok(h) => h,
                    Err(e) => {
                        bar.suspend(|| eprintln!("line {}: {e}", n + 1));
                        skipped += 1;
                        continue;
                    }
                };
                match store.create_household(&h) {
                    Ok((_, out)) => {
                        saved += 1;
                        with_issues += usize::from(!out.issues.is_empty());
                    }
                    Err(e) => {
                        bar.suspend(|| eprintln!("line {}: {e}", n + 1));
                        skipped += 1;
                    }
                }
            }
            bar.finish();
            println!("imported {saved} households ({with_issues} with validation issues), skipped {skipped}");
        }
        Command::List { page, page_size } => {
            let store = open_unlocked(&cli)?;
            let total = store.count_households()?;
            let rows = store.list_households(page.saturating_sub(1) * page_size, *page_size)?;
            print_listed(&rows);
            println!("page {page} of {} ({total} households)", total.div_ceil(u64::from((*page_size).max(1))));
        }
        Command::Search { query } => {
            let store = open_unlocked(&cli)?;
            let digits: String = query.chars().filter(|c| !c.is_whitespace()).collect();
            let hits = if digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()) {
                store.search_cccd(&digits)?
            } else {
                store.search_name(query)?
            };
            print_hits(&hits);
        }
        Command::Show { id } => {
            let store = open_unlocked(&cli)?;
            println!("{}", serde_json::to_string_pretty(&store.household(id)?)?);
        }
        Command::Set { id, path, value } => {
            let mut store = open_unlocked(&cli)?;
            let mut doc = store.open_household(id)?;
            doc.resolve(path, Some(value), &store.editor()?)?;
            let out = store.save_household(&mut doc)?;
            println!("saved ({} issue(s))", out.issues.len());
        }
        Command::Verify { id, needs_correction, note, member } => {
            let mut store = open_unlocked(&cli)?;
            let state =
                if *needs_correction { VerificationState::NeedsCorrection } else { VerificationState::Verified };
            let v = store.verify_household(id, state, note.as_deref(), member.as_deref())?;
            let what = member.as_ref().map(|m| format!("resident {m} of {id}")).unwrap_or_else(|| id.clone());
            println!("{what}: {} by {} on {} at {}", v.state.code(), v.by, v.device, chrono_time(v.at));
        }
        Command::Move { id, to, reason } => {
            let mut store = open_unlocked(&cli)?;
            match store.move_household(id, to, reason)? {
                MoveOutcome::Moved => println!("moved {id} to {to}; the next sync sends it"),
                MoveOutcome::TransferRequested { request_id } => println!(
                    "{to} is outside this phone's areas: transfer request {request_id} is sent at the next sync, \
                     for an operator to decide (see `doorstep transfers`)"
                ),
            }
        }
        Command::MoveResident { from, member, to, date, relation } => {
            let mut store = open_unlocked(&cli)?;
            let today = doorstep_core::vn_time::date(chrono::Utc::now().timestamp()).format("%Y-%m-%d").to_string();
            let new_id =
                store.move_resident(from, member, to, date.as_deref().unwrap_or(&today), relation.as_deref())?;
            println!("{member} moved out of {from}; now {new_id} in {to}; the next sync sends both");
        }
        Command::Transfers => {
            let store = open_unlocked(&cli)?;
            let requests = store.transfer_requests()?;
            if requests.is_empty() {
                println!("no transfer request");
            }
            for r in requests {
                let note = if r.note.is_empty() { String::new() } else { format!(": {}", r.note) };
                println!("{}  {} → {}  {}{note}", r.request_id, r.household_id, r.to_area, r.status.as_str());
            }
        }
        Command::Returned => {
            let store = open_unlocked(&cli)?;
            let total = store.count_households()?;
            let mut found = 0;
            for listed in store.list_households(0, u32::try_from(total).unwrap_or(u32::MAX))? {
                let h = store.household(&listed.household_id)?;
                if h.review_status() != ReviewStatus::Returned {
                    continue;
                }
                found += 1;
                let r = h.review.as_ref();
                println!(
                    "{}  returned for correction by {} at {}: {}",
                    h.household_id,
                    r.map_or("?", |r| r.by.as_str()),
                    r.map_or_else(String::new, |r| chrono_time(r.at)),
                    r.and_then(|r| r.comment.as_deref()).unwrap_or("(no comment)")
                );
            }
            if found == 0 {
                println!("no household is returned for correction");
            }
        }
        Command::Validate { id } => {
            let store = open_unlocked(&cli)?;
            let h = store.household(id)?;
            let issues = residence_survey().validate_owned(h.to_answers(), chrono_today());
            if issues.is_empty() {
                println!("valid");
            }
            for i in issues {
                println!("{}  {:?}  {} / {}", i.path, i.kind, i.message.vi, i.message.en);
            }
        }
        Command::Conflicts { id } => {
            let store = open_unlocked(&cli)?;
            let conflicts = store.open_household(id)?.conflicts()?;
            if conflicts.is_empty() {
                println!("no conflicts");
            }
            for c in conflicts {
                println!("{}", c.path);
                for v in c.values {
                    println!(
                        "    {:<30} by {}  at {}",
                        v.value.as_deref().unwrap_or("(empty)"),
                        v.author.as_deref().unwrap_or("?"),
                        chrono_time(v.time)
                    );
                }
            }
        }
        Command::Resolve { id, path, value } => {
            let mut store = open_unlocked(&cli)?;
            let mut doc = store.open_household(id)?;
            doc.resolve(path, Some(value), &store.editor()?)?;
            store.save_household(&mut doc)?;
            println!("resolved {path}; {} conflict(s) left", doc.conflicts()?.len());
        }
        Command::MergeFrom { other_store, other_profile, id } => {
            let mut store = open_unlocked(&cli)?;
            let mut other = Store::open(other_store)?;
            let pin = secret("DOORSTEP_OTHER_PIN", &format!("PIN for {other_profile} on the other store: "))?;
            other.unlock(other_profile, &pin, None)?;
            let mut theirs = other.open_household(id)?;
            let mut doc = match store.open_household(id) {
                Ok(doc) => doc,
                Err(doorstep_core::Error::NotFound(_)) => {
                    let bytes = theirs.save();
                    HouseholdDoc::load(id, &bytes, &store.editor()?)?
                }
                Err(e) => return Err(e.into()),
            };
            doc.merge(&mut theirs)?;
            store.save_household(&mut doc)?;
            println!("merged {id}; {} conflict(s)", doc.conflicts()?.len());
        }
        Command::Duplicates { name, dob, sex, cccd } => {
            let store = open_unlocked(&cli)?;
            let key = PersonKey {
                full_name: name.clone(),
                dob: dob.as_deref().and_then(chrono_date),
                sex: sex.as_deref().and_then(Sex::parse),
                cccd: cccd.clone(),
                phone: None,
            };
            let found = store.find_duplicates(&key, None)?;
            if found.is_empty() {
                println!("no duplicate candidates");
            }
            for d in found {
                println!(
                    "{:.2}  {}  {} / {}  {}",
                    d.score.probability,
                    d.full_name,
                    d.household_id,
                    d.member_id,
                    d.score.explanation_lines().join(", ")
                );
            }
        }
        Command::CheckCccd { number } => match Cccd::parse(number) {
            Ok(c) => println!(
                "valid: province {} ({}), {:?}, born {}",
                c.province_code(),
                doorstep_core::identity::province_name(c.province_code()).unwrap_or("?"),
                c.sex(),
                c.birth_year()
            ),
            Err(e) => bail!("invalid CCCD: {e}"),
        },
        Command::QrEncode { text, out } => {
            if let Ok(card) = ChipCardQr::parse(text) {
                println!("chip card payload for {}", card.full_name);
            }
            std::fs::write(out, qr::encode_png(text, 6)?)?;
            println!("wrote {}", out.display());
        }
        Command::QrDecode { image } => {
            for text in qr::decode_image(&std::fs::read(image)?)? {
                println!("{text}");
            }
        }
        Command::Form { check } => match check {
            Some(path) => {
                let f = FormDefinition::from_json(&std::fs::read_to_string(path)?)?;
                println!("form {} version {}: {} top-level fields, valid", f.id, f.version, f.fields.len());
            }
            None => println!("{}", residence_survey().to_json()),
        },
        Command::Stats => {
            let store = open_unlocked(&cli)?;
            let s = store.storage_stats()?;
            let per = |b: u64| b.checked_div(s.households).unwrap_or(0);
            println!("households:        {}", s.households);
            println!("database (pages):  {} bytes, {} per household", s.database_bytes, per(s.database_bytes));
            println!("sealed documents:  {} bytes, {} per household", s.chunk_bytes, per(s.chunk_bytes));
            println!("sealed summaries:  {} bytes, {} per household", s.summary_bytes, per(s.summary_bytes));
            println!("blind index rows:  {}", s.index_rows);
        }
        Command::Enrol { qr_image } => {
            let mut store = open_unlocked(&cli)?;
            let code = EnrolmentCode::from_image(&std::fs::read(qr_image)?)?;
            let transport = HttpTransport::new(&code.url)?;
            let areas = doorstep_core::sync::enrol(&mut store, &transport, &code)?;
            println!("enrolled device {} with {} for area(s) {}", store.device_id(), code.url, areas.join(", "));
        }
        Command::VerifySlip { qr_image } => {
            let store = open_unlocked(&cli)?;
            let texts = doorstep_core::qr::decode_image(&std::fs::read(qr_image)?)?;
            let text = texts.first().context("no QR code in the image")?;
            let slip = doorstep_core::sync::verify_slip(&store, text)?;
            println!("valid slip for household {} ({}), issued {}", slip.household_id, slip.area, slip.issued_on);
            println!("  address: {}", slip.address);
            for m in &slip.members {
                let born = m.birth_year.map(|y| y.to_string()).unwrap_or_default();
                let cccd = m.cccd_last4.as_deref().map(|c| format!("CCCD …{c}")).unwrap_or_default();
                println!("  {}  {born}  {cccd}", m.name);
            }
        }
        Command::PhotoAdd { household, image, member, max_side } => {
            let mut store = open_unlocked(&cli)?;
            let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
            let options = doorstep_core::photo::PhotoOptions { max_side: *max_side, ..Default::default() };
            let field = photo_field(member);
            let photo = store.add_photo(household, &field, &bytes, options)?;
            let sealed = store.sealed_blob(&photo.full.id)?.map_or(0, |b| b.len());
            let what = match member {
                Some(m) => format!("document photo of {household}/{m}"),
                None => format!("house photo of {household}"),
            };
            println!(
                "{what}: {}x{} px, {sealed} bytes sealed (from {} bytes), id {}",
                photo.width,
                photo.height,
                bytes.len(),
                &photo.full.id[..16]
            );
        }
        Command::PhotoGet { household, member, out, thumb } => {
            let store = open_unlocked(&cli)?;
            let size = if *thumb { PhotoSize::Thumb } else { PhotoSize::Full };
            let field = photo_field(member);
            let text = store.household(household)?.photo(&field).map(str::to_owned).context("no such photo")?;
            let photo = doorstep_core::attachment::PhotoRef::parse(&text)?;
            if store.photo(household, &field, size)?.is_none() {
                let url = store.sync_value("server_url")?.context("not held here, and not enrolled to fetch it")?;
                let id = if *thumb { &photo.thumb.id } else { &photo.full.id };
                doorstep_core::sync::fetch_blob(&store, &HttpTransport::new(&url)?, id, &AtomicBool::new(false))?;
            }
            let bytes = store.photo(household, &field, size)?.context("the photo could not be fetched")?;
            std::fs::write(out, &bytes)?;
            println!("wrote {} ({} bytes)", out.display(), bytes.len());
        }
        Command::Devices => {
            let store = open_unlocked(&cli)?;
            println!("this device: {}  bundle key {}", store.device_id(), hex::encode(store.transfer_key()?));
            for d in store.directory()? {
                let status = if d.revoked { "revoked" } else { "active" };
                println!("  {}  area {}  {status}", d.device_id, d.area);
            }
        }
        Command::BundleExport { to, households, dirty_area, out, qr_dir } => {
            let store = open_unlocked(&cli)?;
            let selection = match (households.is_empty(), dirty_area) {
                (false, None) => BundleSelection::Households(households.clone()),
                (true, Some(area)) => BundleSelection::DirtyInArea(area.clone()),
                _ => bail!("give either --household (repeatable) or --dirty-area"),
            };
            if out.is_none() && qr_dir.is_none() {
                bail!("give --out, --qr-dir, or both");
            }
            let bundle = store.export_bundle(to, &selection)?;
            if let Some(out) = out {
                std::fs::write(out, &bundle)?;
                println!("bundle for {to}: {} bytes written to {}", bundle.len(), out.display());
            }
            if let Some(dir) = qr_dir {
                std::fs::create_dir_all(dir)?;
                let frames = to_frames(&bundle, FRAME_PAYLOAD_BYTES)?;
                for (i, f) in frames.iter().enumerate() {
                    std::fs::write(dir.join(format!("frame-{i:04}.png")), qr::encode_png(f, 4)?)?;
                }
                println!("bundle for {to}: {} bytes as {} QR frames in {}", bundle.len(), frames.len(), dir.display());
            }
        }
        Command::BundleImport { inputs } => {
            let mut store = open_unlocked(&cli)?;
            let first = std::fs::read(&inputs[0])?;
            let bundle = if first.starts_with(doorstep_core::transfer::bundle::MAGIC) {
                first
            } else {
                let mut rx = FrameReceiver::new();
                for path in inputs {
                    match rx.add_image(&std::fs::read(path)?) {
                        Ok(p) => println!("{}: frame {}/{}", path.display(), p.received, p.total),
                        Err(e) => println!("{}: skipped ({e})", path.display()),
                    }
                }
                if !rx.is_complete() {
                    bail!("frames still missing: {:?}", rx.missing());
                }
                rx.bundle()?
            };
            let r = store.import_bundle(&bundle)?;
            println!(
                "imported from {}: {} household(s), {} changed here, {} photo blob(s) added; they reach the server at the next sync",
                r.sender_device, r.households, r.changed, r.blobs_added
            );
        }
        Command::Sync => {
            let mut store = open_unlocked(&cli)?;
            let url = store.sync_value("server_url")?.context("not enrolled: run `doorstep enrol` first")?;
            let transport = HttpTransport::new(&url)?;
            let bar = ProgressBar::new_spinner();
            struct Bar(ProgressBar);
            impl SyncObserver for Bar {
                fn progress(&self, p: &SyncProgress) {
                    self.0.set_message(format!(
                        "{} pushed, {} pulled, {} round trip(s)",
                        p.pushed, p.pulled, p.round_trips
                    ));
                    self.0.tick();
                }
            }
            let observer = Bar(bar.clone());
            let report = doorstep_core::sync::sync(&mut store, &transport, Some(&observer), &AtomicBool::new(false))?;
            bar.finish_and_clear();
            println!(
                "synced: {} pushed, {} pulled, {} round trip(s), {} bytes sent, {} received",
                report.pushed, report.pulled, report.round_trips, report.bytes_sent, report.bytes_received
            );
            for r in &report.refused {
                println!("refused by the server, kept on this phone: {}: {}", r.doc_id, r.message);
            }
            for (doc_id, error) in &report.quarantined {
                println!("quarantined (kept aside, asked again at the next sync): {doc_id}: {error}");
            }
            if report.released > 0 {
                println!("released from quarantine: {} change set(s)", report.released);
            }
            if report.departed > 0 {
                println!("removed from this phone: {} household(s) that moved out of its areas", report.departed);
            }
            for (doc_id, to) in &report.departing {
                println!("moved to {to}, kept until the server has this phone's edits: {doc_id}");
            }
            for t in &report.transfers_decided {
                let note = if t.note.is_empty() { String::new() } else { format!(": {}", t.note) };
                println!("transfer request {} {}{note}", t.request_id, t.status.as_str());
            }
            let waiting = store.quarantined()?;
            if !waiting.is_empty() {
                println!("{} household(s) in quarantine", waiting.len());
            }
            // Photos after records: the records are already safe on the server.
            let photos = doorstep_core::sync::sync_attachments(&store, &transport, &AtomicBool::new(false))?;
            if photos.requests > 0 {
                println!(
                    "photos: {} uploaded, {} thumbnail(s) downloaded, {} bytes sent, {} received",
                    photos.uploaded, photos.downloaded, photos.bytes_sent, photos.bytes_received
                );
            }
        }
    }
    Ok(())
}

fn chrono_date(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn chrono_today() -> chrono::NaiveDate {
    doorstep_core::vn_time::date(chrono::Utc::now().timestamp())
}

fn chrono_time(secs: i64) -> String {
    doorstep_core::vn_time::local(secs).format("%Y-%m-%d %H:%M:%S (UTC+7)").to_string()
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The photo field a `--member` option names: that resident's document photo, else the house photo.
fn photo_field(member: &Option<String>) -> doorstep_core::record::PhotoField {
    match member {
        Some(m) => doorstep_core::record::PhotoField::MemberDocument(m.clone()),
        None => doorstep_core::record::PhotoField::House,
    }
}
