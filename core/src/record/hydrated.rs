//! A household document read in one pass and written new in one batch.
//!
//! Automerge answers each `get` or `put` with a seek in its op set: reading a household a
//! field at a time cost ~200 µs, creating one ~740 µs (a commune of 10,000 is 10 s of it).
//! [`automerge::ReadDoc::hydrate`] walks an object once, and
//! [`automerge::transaction::Transactable::init_root_from_hydrate`] writes a whole tree in
//! two splices. This module turns hydrated values into the record's types and back.

use automerge::ScalarValue;
use automerge::hydrate::{List, Map, MapValue, Value};

use super::{GeoPoint, Household, LifeEvent, LifeEventKind, MEMBER_FIELDS, Member};
use crate::verification::{EditMark, Review, ReviewDecision, Verification, VerificationState};

/// A non-empty string at `key` (what `HouseholdDoc::string_at` reads).
pub(super) fn text(map: &Map, key: &str) -> Option<String> {
    match map.get(key) {
        Some(Value::Scalar(ScalarValue::Str(s))) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    }
}

/// An integer at `key`.
pub(super) fn int(map: &Map, key: &str) -> Option<i64> {
    match map.get(key) {
        Some(Value::Scalar(s)) => s.as_i64(),
        _ => None,
    }
}

/// A number at `key`, integer or float.
fn number(map: &Map, key: &str) -> Option<f64> {
    match map.get(key) {
        Some(Value::Scalar(ScalarValue::F64(f))) => Some(*f),
        Some(Value::Scalar(ScalarValue::Int(i))) => Some(*i as f64),
        _ => None,
    }
}

/// The map at `key`.
pub(super) fn map<'a>(parent: &'a Map, key: &str) -> Option<&'a Map> {
    match parent.get(key) {
        Some(Value::Map(m)) => Some(m),
        _ => None,
    }
}

/// A verification kept in the map `obj` (a household's or a member's `verification`).
pub(super) fn verification(obj: &Map) -> Option<Verification> {
    Some(Verification {
        id: text(obj, "id")?,
        state: VerificationState::parse(&text(obj, "state")?)?,
        by: text(obj, "by").unwrap_or_default(),
        device: text(obj, "device").unwrap_or_default(),
        at: int(obj, "at").unwrap_or_default(),
        note: text(obj, "note"),
    })
}

/// The operator's review kept in the map `obj` (the root's `review`).
pub(super) fn review(obj: &Map) -> Option<Review> {
    Some(Review {
        id: text(obj, "id")?,
        decision: ReviewDecision::parse(&text(obj, "decision")?)?,
        by: text(obj, "by").unwrap_or_default(),
        at: int(obj, "at").unwrap_or_default(),
        comment: text(obj, "comment"),
    })
}

/// The last edit's mark kept in the map `obj` (the root's `edited`).
pub(super) fn edit_mark(obj: &Map) -> EditMark {
    EditMark {
        at: int(obj, "at").unwrap_or_default(),
        by: text(obj, "by").unwrap_or_default(),
        after_verification: text(obj, "after_verification"),
        after_review: text(obj, "after_review"),
    }
}

/// The household a hydrated root says, taking the winning value of any conflict.
pub(super) fn household(id: &str, root: &Map) -> Household {
    let mut h = Household {
        household_id: id.to_string(),
        area_code: text(root, "area_code").unwrap_or_default(),
        address: text(root, "address").unwrap_or_default(),
        head_member_id: text(root, "head_member_id"),
        house_photo: text(root, "house_photo"),
        verification: map(root, "verification").and_then(verification),
        review: map(root, "review").and_then(review),
        edited: map(root, "edited").map(edit_mark),
        ..Household::default()
    };
    if let Some(loc) = map(root, "location")
        && let (Some(lat), Some(lon)) = (number(loc, "lat"), number(loc, "lon"))
    {
        h.location = Some(GeoPoint { lat, lon, accuracy: number(loc, "accuracy") });
    }
    if let Some(members) = map(root, "members") {
        let mut rows: Vec<(i64, Member)> = members
            .iter()
            .filter_map(|(id, v)| match &v.value {
                Value::Map(obj) => Some((id, obj)),
                _ => None,
            })
            .map(|(id, obj)| {
                let mut m = Member { member_id: id.clone(), ..Member::default() };
                for field in MEMBER_FIELDS {
                    m.set(field, text(obj, field));
                }
                m.verification = map(obj, "verification").and_then(verification);
                (int(obj, "order").unwrap_or(i64::MAX), m)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.member_id.cmp(&b.1.member_id)));
        h.members = rows.into_iter().map(|(_, m)| m).collect();
    }
    if let Some(Value::List(events)) = root.get("events") {
        for item in events.iter() {
            let Value::Map(obj) = &item.value else { continue };
            let Some(kind) = text(obj, "kind").as_deref().and_then(LifeEventKind::parse) else { continue };
            h.events.push(LifeEvent {
                kind,
                member_id: text(obj, "member_id").unwrap_or_default(),
                date: text(obj, "date").unwrap_or_default(),
                place: text(obj, "place"),
                note: text(obj, "note"),
            });
        }
    }
    h
}

fn put(map: &mut Map, key: &str, value: impl Into<Value>) {
    map.insert(key.to_string(), MapValue { value: value.into(), conflict: false });
}

/// The tree a new document holding `household` starts from, under `schema`: what writing
/// each field would make, members keyed by id in their order (a repeated id is one member,
/// with its last values and its first place), events in order.
pub(super) fn new_root(household: &Household, schema: &str, root_fields: &[&str]) -> Map {
    let mut root = Map::default();
    put(&mut root, "schema", schema);
    put(&mut root, "household_id", household.household_id.as_str());
    for field in root_fields {
        if let Some(v) = household.root_field(field) {
            put(&mut root, field, v);
        }
    }
    if let Some(loc) = household.location {
        let mut obj = Map::default();
        put(&mut obj, "lat", loc.lat);
        put(&mut obj, "lon", loc.lon);
        if let Some(acc) = loc.accuracy {
            put(&mut obj, "accuracy", acc);
        }
        put(&mut root, "location", Value::Map(obj));
    }
    let mut members = Map::default();
    for (order, m) in household.members.iter().enumerate() {
        let order = match members.get(m.member_id.as_str()) {
            Some(Value::Map(first)) => int(first, "order").unwrap_or(order as i64),
            _ => order as i64,
        };
        let mut obj = Map::default();
        put(&mut obj, "order", order);
        for field in MEMBER_FIELDS {
            if let Some(v) = m.get(field) {
                put(&mut obj, field, v);
            }
        }
        put(&mut members, &m.member_id, Value::Map(obj));
    }
    put(&mut root, "members", Value::Map(members));
    let events: Vec<Value> = household
        .events
        .iter()
        .map(|e| {
            let mut obj = Map::default();
            put(&mut obj, "kind", e.kind.code());
            put(&mut obj, "member_id", e.member_id.as_str());
            put(&mut obj, "date", e.date.as_str());
            if let Some(p) = &e.place {
                put(&mut obj, "place", p.as_str());
            }
            if let Some(n) = &e.note {
                put(&mut obj, "note", n.as_str());
            }
            Value::Map(obj)
        })
        .collect();
    put(&mut root, "events", Value::List(List::from(events)));
    root
}

#[cfg(test)]
mod tests {
    use automerge::{ROOT, ReadDoc};

    use crate::record::{Editor, Household, HouseholdDoc, Member};

    fn ed(user: &str) -> Editor {
        Editor { user: user.into(), device: "d".into() }
    }

    fn household() -> Household {
        Household {
            household_id: "hh-h".into(),
            area_code: "01.001.00001".into(),
            address: "Số 1".into(),
            members: vec![
                Member { member_id: "m1".into(), full_name: "Lò Văn A".into(), ..Member::default() },
                Member { member_id: "m2".into(), full_name: "Lò Thị B".into(), ..Member::default() },
            ],
            ..Household::default()
        }
    }

    /// The winner Automerge's `get` names (what the conflict list shows first).
    fn winner(doc: &HouseholdDoc, obj: &automerge::ObjId, key: &str) -> String {
        match doc.doc.get(obj, key).unwrap() {
            Some((automerge::Value::Scalar(s), _)) => s.as_str().unwrap_or_default().to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_conflict_reads_as_the_value_get_names() {
        for (x, y) in [("alice", "bob"), ("bob", "alice")] {
            let mut a = HouseholdDoc::create(&household(), &ed(x)).unwrap();
            let mut b = a.fork();
            let (mut ha, mut hb) = (household(), household());
            ha.address = "A".into();
            ha.members[1].full_name = "A".into();
            hb.address = "B".into();
            hb.members[1].full_name = "B".into();
            a.update(&ha, &ed(x)).unwrap();
            b.update(&hb, &ed(y)).unwrap();
            a.merge(&mut b).unwrap();
            let read = a.read();
            assert_eq!(read.address, winner(&a, &ROOT, "address"));
            let members = a.map(&ROOT, "members").unwrap();
            let m2 = a.map(&members, "m2").unwrap();
            assert_eq!(read.members[1].full_name, winner(&a, &m2, "full_name"));
            assert_eq!(a.conflicts().unwrap().len(), 2);
        }
    }

    #[test]
    fn a_repeated_member_is_one_with_its_last_values_in_its_first_place() {
        let mut h = household();
        let mut again = h.members[0].clone();
        again.full_name = "Lò Văn C".into();
        again.phone = Some("0912345678".into());
        h.members.push(again);
        let read = HouseholdDoc::create(&h, &ed("a")).unwrap().read();
        assert_eq!(read.members.len(), 2);
        assert_eq!(read.members[0].member_id, "m1");
        assert_eq!(read.members[0].full_name, "Lò Văn C");
        assert_eq!(read.members[0].phone.as_deref(), Some("0912345678"));
        assert_eq!(read.members[1].member_id, "m2");
    }
}
