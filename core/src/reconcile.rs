//! A registry's new version of a household, applied to a household that officers may
//! have corrected since the registry last spoke of it (a three-way merge by field).
//!
//! The registry is the authority for what *it* changed between its last version
//! (`base`) and this one (`incoming`); every other field keeps what the document says
//! now, so re-importing an unchanged file never undoes an officer's correction. With no
//! base (the registry never spoke of this household), every field the registry gives wins.

use serde_json::{Map, Value};

use crate::record::Household;

/// The household after applying the registry's changes from `base` to `incoming` onto `current`.
///
/// - A root field (address, head, area…) is the registry's when it differs between `base` and `incoming`.
/// - A member, matched by `member_id`, takes each field the registry changed; a member new in
///   `incoming` is added (or, if officers already added one with that id, takes the registry's
///   fields); a member the registry dropped since `base` is removed.
/// - Events are append-only: the registry's new events are added once.
///
/// Workflow marks (verification, review, the latest edit) are never the registry's: they are
/// left out of `base` and `incoming`, and `current`'s stand.
pub fn registry_update(current: &Household, base: Option<&Household>, incoming: &Household) -> Household {
    let mut cur = as_object(current);
    let base = base.map(|b| as_object(&b.without_workflow())).unwrap_or_default();
    let new = as_object(&incoming.without_workflow());
    for (key, value) in &new {
        if matches!(key.as_str(), "members" | "events") {
            continue;
        }
        if base.get(key) != Some(value) {
            cur.insert(key.clone(), value.clone());
        }
    }
    let base_members = members(&base);
    let new_members = members(&new);
    let mut cur_members = members(&cur);
    for m in &new_members {
        let id = member_id(m);
        let was = base_members.iter().find(|b| member_id(b) == id);
        match cur_members.iter_mut().find(|c| member_id(c) == id) {
            Some(Value::Object(c)) => {
                let empty = Map::new();
                let was = was.and_then(Value::as_object).unwrap_or(&empty);
                for (key, value) in m.as_object().into_iter().flatten() {
                    if was.get(key) != Some(value) {
                        c.insert(key.clone(), value.clone());
                    }
                }
            }
            // Officers removed a member the registry already knew: their removal stands.
            _ if was.is_some() => {}
            _ => cur_members.push(m.clone()),
        }
    }
    cur_members.retain(|c| {
        let id = member_id(c);
        let dropped =
            base_members.iter().any(|b| member_id(b) == id) && !new_members.iter().any(|n| member_id(n) == id);
        !dropped
    });
    cur.insert("members".into(), Value::Array(cur_members));
    let mut events = list(&cur, "events");
    let base_events = list(&base, "events");
    for e in list(&new, "events") {
        if !base_events.contains(&e) && !events.contains(&e) {
            events.push(e);
        }
    }
    cur.insert("events".into(), Value::Array(events));
    // Every value came from a serialized `Household`, so this reads back; keep `current` if not.
    serde_json::from_value(Value::Object(cur)).unwrap_or_else(|_| current.clone())
}

fn as_object(h: &Household) -> Map<String, Value> {
    match serde_json::to_value(h) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn list(obj: &Map<String, Value>, key: &str) -> Vec<Value> {
    obj.get(key).and_then(Value::as_array).cloned().unwrap_or_default()
}

fn members(obj: &Map<String, Value>) -> Vec<Value> {
    list(obj, "members")
}

fn member_id(m: &Value) -> &str {
    m.get("member_id").and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Member;

    fn household() -> Household {
        Household {
            household_id: "01.001-000001".into(),
            area_code: "01.001".into(),
            address: "Số 1, Thôn Đông".into(),
            head_member_id: Some("m0".into()),
            members: vec![
                Member { member_id: "m0".into(), full_name: "Lê Văn An".into(), ..Member::default() },
                Member { member_id: "m1".into(), full_name: "Lê Thị Bình".into(), ..Member::default() },
            ],
            ..Household::default()
        }
    }

    #[test]
    fn an_unchanged_registry_row_keeps_the_officers_corrections() {
        let base = household();
        let mut current = base.clone();
        current.members[0].full_name = "Lê Văn Ân".into();
        current.address = "Số 3, Thôn Đông".into();
        assert_eq!(registry_update(&current, Some(&base), &base), current);
    }

    #[test]
    fn the_registry_changes_only_what_it_changed() {
        let base = household();
        let mut current = base.clone();
        current.members[0].phone = Some("0912345678".into());
        let mut incoming = base.clone();
        incoming.members[1].cccd = Some("001190000001".into());
        incoming.address = "Số 2, Thôn Đông".into();
        let out = registry_update(&current, Some(&base), &incoming);
        assert_eq!(out.address, "Số 2, Thôn Đông");
        assert_eq!(out.members[0].phone.as_deref(), Some("0912345678"));
        assert_eq!(out.members[1].cccd.as_deref(), Some("001190000001"));
    }

    #[test]
    fn members_added_and_dropped_by_the_registry_follow_it() {
        let base = household();
        let mut current = base.clone();
        current
            .members
            .push(Member { member_id: "m9".into(), full_name: "Lê Văn Mới".into(), ..Member::default() });
        let mut incoming = base.clone();
        incoming.members.remove(1);
        incoming
            .members
            .push(Member { member_id: "m2".into(), full_name: "Lê Văn Cường".into(), ..Member::default() });
        let out = registry_update(&current, Some(&base), &incoming);
        let ids: Vec<&str> = out.members.iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(ids, ["m0", "m9", "m2"]);
    }

    #[test]
    fn without_a_base_the_registry_speaks_for_every_field_it_gives() {
        let mut current = household();
        current.address = "typed on a phone".into();
        let incoming = household();
        assert_eq!(registry_update(&current, None, &incoming), incoming);
    }
}
