//! The records and edits of BENCHMARKS.md, generated deterministically from seed 42.
//!
//! A record is a door visit (`Kind::Visit`) of about 1 KB as JSON, made only of the visit's
//! declared fields (validation refuses others): `observations` (200 Chinese characters, Automerge
//! text), household, type, outcome, times, GPS, the next visit's date, the people met, the
//! visitor, two publicity topics and one issue found. W3's record is an assistance case of the
//! same size. An edit sets one scalar field, cycling through the kind's [`edit_fields`]; the
//! replica sets `updated_at` itself.

use anyhow::Result;
use chrono::{DateTime, Duration, TimeZone, Utc};
use gridsync_core::Replica;
use gridsync_core::record::Kind;
use serde_json::{Map, Value, json};

pub const SEED: u64 = 42;

/// The scalar fields an edit of a kind sets, in the order edits cycle through them.
pub fn edit_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Case => &["status", "next_review_due", "responsible", "source"],
        _ => &["outcome", "next_visit_due", "visit_type"],
    }
}

/// xorshift64* seeded through splitmix64; `stream` gives each device its own sequence.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed
            .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

const HAN: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你能而说下过\
子后自家年还里所去得之进着等部度行民学法发同工水老没事心把小正想看开点现其多天经动问手加高样体当已走访居情况\
良好身健康活困难需帮助孩读书父母打病住院药费低保申请邻里关系和睦房屋漏雨修缮电线老化消防通道堆放杂物宣传反诈骗";

const PUBLICITY: [&str; 6] = [
    "防范电信诈骗",
    "消防安全",
    "垃圾分类",
    "医保政策",
    "防汛知识",
    "文明养犬",
];
const HANDLINGS: [&str; 3] = ["solved_on_spot", "taken_back", "reported_at_once"];
const SOURCES: [&str; 3] = ["visit", "applied", "referred"];
const PRIORITIES: [&str; 3] = ["low", "medium", "high"];
const VISIT_TYPES: [&str; 5] = [
    "routine",
    "priority",
    "assistance",
    "follow_up",
    "emergency",
];
const OUTCOMES: [&str; 4] = ["met", "nobody_home", "refused", "moved"];
const NEEDS: [&str; 8] = [
    "医疗救助",
    "低保申请",
    "就业帮扶",
    "助学",
    "房屋修缮",
    "心理疏导",
    "居家养老",
    "法律援助",
];
const SURNAMES: [&str; 8] = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄"];
const GIVEN: [&str; 8] = ["秀英", "建国", "桂兰", "伟", "芳", "军", "丽", "强"];

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0)
        .single()
        .unwrap_or_default()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn date(rng: &mut Rng) -> String {
    (base_time() + Duration::days(30 + rng.below(120) as i64))
        .format("%Y-%m-%d")
        .to_string()
}

fn han(rng: &mut Rng, chars: usize) -> String {
    let pool: Vec<char> = HAN.chars().collect();
    (0..chars).map(|_| rng.pick(&pool)).collect()
}

fn name(rng: &mut Rng) -> String {
    format!("{}{}", rng.pick(&SURNAMES), rng.pick(&GIVEN))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A household. Its `last_visit_at` is set after every generated visit, so creating a visit does
/// not also write the household (the replica moves a household's last visit forward when a newer
/// visit is created, which would add a second write to every record creation).
pub fn household_fields(rng: &mut Rng) -> Map<String, Value> {
    obj(json!({
        "head_name": name(rng),
        "household_type": "registered",
        "visit_class": "priority",
        "address": {"estate": "幸福小区", "building": (1 + rng.below(20)).to_string(),
                    "unit": (1 + rng.below(4)).to_string(), "door": format!("{}0{}", 1 + rng.below(18), 1 + rng.below(4))},
        "last_visit_at": "2026-12-31T00:00:00Z",
    }))
}

/// A door visit of about 1 KB as JSON (12 fields; the replica adds its system fields: id, kind,
/// grid, creator, device, created and updated time and worker, schema version).
pub fn visit_fields(rng: &mut Rng, household_id: &str, worker: &str) -> Map<String, Value> {
    let started = base_time() + Duration::minutes(rng.below(60 * 24 * 60) as i64);
    let ended = started + Duration::minutes(10 + rng.below(50) as i64);
    obj(json!({
        "household_id": household_id,
        "visit_type": rng.pick(&VISIT_TYPES),
        "started_at": rfc3339(started),
        "ended_at": rfc3339(ended),
        "outcome": rng.pick(&OUTCOMES),
        "gps": {"lat": 30.5 + rng.below(10_000) as f64 / 100_000.0,
                "lon": 114.3 + rng.below(10_000) as f64 / 100_000.0},
        "observations": han(rng, 200),
        "next_visit_due": date(rng),
        "people_met": [name(rng), name(rng)],
        "visitors": [worker],
        "publicity": [rng.pick(&PUBLICITY), rng.pick(&PUBLICITY)],
        "issues": [{"category": rng.pick(&NEEDS), "description": han(rng, 12),
                    "handling": rng.pick(&HANDLINGS)}],
    }))
}

/// An assistance case of about 1 KB: the W3 record, because a case's `status` is what the
/// replica's index holds (for a visit the index's status column holds the visit's outcome).
/// Created as a draft; its first edit moves it to "open" (about a third) or "closed".
pub fn case_fields(rng: &mut Rng, household_id: &str, worker: &str) -> Map<String, Value> {
    let at = base_time() + Duration::minutes(rng.below(60 * 24 * 60) as i64);
    obj(json!({
        "case_type": rng.pick(&["five_guarantee", "disability", "low_income", "reemployment", "elderly_care"]),
        "household_id": household_id,
        "subject_name": name(rng),
        "source": "visit",
        "cause": han(rng, 12),
        "needs": [{"description": rng.pick(&NEEDS), "priority": rng.pick(&PRIORITIES)},
                  {"description": rng.pick(&NEEDS), "priority": rng.pick(&PRIORITIES)}],
        "responsible": worker,
        "next_review_due": date(rng),
        "actions": [{"kind": "visit", "at": rfc3339(at), "by": worker}],
        "status": "draft",
        "notes": han(rng, 200),
    }))
}

/// The `k`-th edit of a record (0-based over the record's life): one scalar field.
pub fn edit_patch(rng: &mut Rng, kind: Kind, k: usize) -> Map<String, Value> {
    let fields = edit_fields(kind);
    let field = fields[k % fields.len()];
    let value: Value = match field {
        // Cases follow their lifecycle: draft → open | closed, and closed is reachable from both.
        "status" => {
            if k == 0 && rng.below(3) == 0 {
                "open".into()
            } else {
                "closed".into()
            }
        }
        "next_review_due" | "next_visit_due" => date(rng).into(),
        "responsible" => format!("worker-{:03}", rng.below(1000)).into(),
        "source" => rng.pick(&SOURCES).into(),
        "visit_type" => rng.pick(&VISIT_TYPES).into(),
        _ => rng.pick(&OUTCOMES).into(),
    };
    let mut patch = Map::new();
    patch.insert(field.to_string(), value);
    patch
}

/// Creates a household on the device; visits and cases must name one that exists there.
pub fn create_household(r: &mut Replica, rng: &mut Rng) -> Result<String> {
    Ok(r.create(Kind::Household, household_fields(rng))?.id)
}

/// Creates a record and gives it `edits` edits of history, one write each.
pub fn create_record(
    r: &mut Replica,
    rng: &mut Rng,
    kind: Kind,
    household_id: &str,
    edits: usize,
) -> Result<String> {
    let worker = r.identity()?.worker_id.clone();
    let fields = match kind {
        Kind::Case => case_fields(rng, household_id, &worker),
        _ => visit_fields(rng, household_id, &worker),
    };
    let id = r.create(kind, fields)?.id;
    for k in 0..edits {
        edit(r, rng, kind, &id, k)?;
    }
    Ok(id)
}

/// Applies the `k`-th edit to a record; returns the record's `updated_at` after it.
pub fn edit(r: &mut Replica, rng: &mut Rng, kind: Kind, id: &str, k: usize) -> Result<String> {
    // An edit changes its field: a value equal to the current one would be no write at all when
    // it lands in the same millisecond as the previous edit (same `updated_at`).
    let current = r.get(id)?.fields;
    let mut patch = edit_patch(rng, kind, k);
    for _ in 0..32 {
        if patch
            .iter()
            .any(|(key, value)| current.get(key) != Some(value))
        {
            break;
        }
        patch = edit_patch(rng, kind, k);
    }
    let record = r.update(id, patch)?;
    Ok(record
        .str_field("updated_at")
        .unwrap_or_default()
        .to_string())
}

/// Size of a stored record as JSON, system fields included, in bytes.
pub fn stored_json_bytes(r: &mut Replica, id: &str) -> Result<u64> {
    Ok(serde_json::to_vec(&r.get(id)?.fields)?.len() as u64)
}

/// Median size as JSON of a generated record's fields (what "a 1 KB record" means here), in
/// bytes, before the replica adds its system fields.
pub fn typical_json_bytes(kind: Kind, household_id: &str, worker: &str) -> u64 {
    let mut rng = Rng::new(SEED, u64::MAX);
    let mut sizes: Vec<usize> = (0..101)
        .map(|_| {
            let fields = match kind {
                Kind::Case => case_fields(&mut rng, household_id, worker),
                _ => visit_fields(&mut rng, household_id, worker),
            };
            serde_json::to_vec(&fields).map(|v| v.len()).unwrap_or(0)
        })
        .collect();
    sizes.sort_unstable();
    sizes[sizes.len() / 2] as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_records_are_about_1_kb_and_deterministic() {
        let h = "0190f0c2-0000-7000-8000-000000000000";
        let v = visit_fields(&mut Rng::new(SEED, 1), h, "worker-b");
        let again = visit_fields(&mut Rng::new(SEED, 1), h, "worker-b");
        assert_eq!(v, again);
        assert_eq!(v["observations"].as_str().unwrap().chars().count(), 200);
        assert_eq!(v["publicity"].as_array().unwrap().len(), 2);
        let size = serde_json::to_vec(&v).unwrap().len();
        assert!((950..=1150).contains(&size), "{size} bytes");
        let c = case_fields(&mut Rng::new(SEED, 1), h, "worker-b");
        let size = serde_json::to_vec(&c).unwrap().len();
        assert!((950..=1150).contains(&size), "case: {size} bytes");
    }

    #[test]
    fn test_generated_records_and_edits_are_accepted_by_a_replica() {
        // The replica refuses a field its kind does not declare: every workload's records and
        // edits must pass its validation, as a device's would.
        let dir = tempfile::tempdir().unwrap();
        let mut r =
            crate::setup::offline_replica(dir.path(), "worker-t", &["grid-t".to_string()]).unwrap();
        let mut rng = Rng::new(SEED, 3);
        let household = create_household(&mut r, &mut rng).unwrap();
        for kind in [Kind::Visit, Kind::Case] {
            for _ in 0..3 {
                let id = create_record(&mut r, &mut rng, kind, &household, 6).unwrap();
                assert_eq!(r.get(&id).unwrap().kind, kind);
            }
        }
    }

    #[test]
    fn test_about_a_third_of_statuses_are_open() {
        let mut rng = Rng::new(SEED, 7);
        let open = (0..3000)
            .filter(|_| edit_patch(&mut rng, Kind::Case, 0)["status"] == "open")
            .count();
        assert!((850..=1150).contains(&open), "{open} of 3000");
    }
}
