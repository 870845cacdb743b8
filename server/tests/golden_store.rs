//! Golden bytes of what the relay stores outside its SQL schema and the Automerge bytes: device
//! and API tokens (what is handed out, and the SHA-256 of it that is kept), password hashes (the
//! PHC string of argon2, parameters included), and the JSON columns of `record_facts`
//! (incidents, participants, movements). Fixtures in server/tests/golden/stored/; `GRIDSYNC_BLESS=1`
//! rewrites them on purpose (docs/protocol.md §12).

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

#[path = "../../client-core/tests/golden/fixture.rs"]
mod fixture;

use gridsync_server::accounts::{self, API_TOKEN_PREFIX};
use gridsync_server::storage::{IncidentFact, MovementFact, ParticipantFact};

const SUB: &str = "stored";

#[test]
fn test_relay_stored_values_match_their_golden_bytes() {
    let mut failures = Vec::new();
    let mut check = |name: &str, what: &str, bytes: &[u8]| {
        if let Err(e) = fixture::check(SUB, name, what, bytes) {
            failures.push(e);
        }
    };

    // What the relay keeps of a token: SHA-256 of its text.
    let device_token = "7f".repeat(32);
    check(
        "token_hash",
        "accounts::token_hash of the device token \"7f\" x 32 (devices.token_hash, api_tokens)",
        &accounts::token_hash(&device_token),
    );
    let (token, hash) = accounts::new_token().unwrap();
    assert_eq!(token.len(), 64);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(hash, accounts::token_hash(&token));
    let (api, api_hash) = accounts::new_api_token().unwrap();
    assert_eq!(API_TOKEN_PREFIX, "gsapi_");
    assert_eq!(api.len(), API_TOKEN_PREFIX.len() + 64);
    assert_eq!(api_hash, accounts::token_hash(&api));

    // Password hashes: argon2id with the parameters the relay has always used.
    let fresh = accounts::hash_password("correct horse 电池").unwrap();
    let params = fresh.rsplitn(3, '$').nth(2).unwrap_or_default();
    check(
        "password_hash_params",
        "The PHC prefix of a new password hash (users.password_hash): algorithm, version, parameters",
        params.as_bytes(),
    );
    // A hash stored by an earlier build (the fixture, written when blessed) still verifies.
    let path = fixture::dir(SUB).join("password_hash_stored.hex");
    if fixture::blessing() {
        let what =
            "A whole password hash as stored, of \"correct horse 电池\": it must keep verifying";
        std::fs::create_dir_all(fixture::dir(SUB)).unwrap();
        std::fs::write(&path, fixture::render(what, fresh.as_bytes())).unwrap();
    }
    let stored = fixture::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let stored = String::from_utf8(stored).unwrap();
    assert!(
        accounts::verify_password("correct horse 电池", &stored),
        "a password hash stored by an earlier build no longer verifies: {stored}"
    );

    // The JSON columns of record_facts.
    let incidents = vec![IncidentFact {
        kind: "fall".into(),
        at: Some("2026-11-02T09:30:00Z".into()),
    }];
    let participants = vec![
        ParticipantFact {
            volunteer_id: Some("v-1".into()),
            unit_id: None,
            hours: 2.5,
        },
        ParticipantFact {
            volunteer_id: None,
            unit_id: Some("u-1".into()),
            hours: 0.0,
        },
    ];
    let movements = vec![MovementFact {
        kind: "out".into(),
        quantity: 3.0,
        at: Some("2026-11-02T09:30:00Z".into()),
        household_id: Some("hh-0001".into()),
        case_id: None,
        donor_unit_id: None,
        donor_name: Some("爱心超市".into()),
    }];
    let json = serde_json::to_string(&incidents).unwrap();
    check(
        "record_facts_incidents",
        &format!("record_facts.incidents:\n{json}"),
        json.as_bytes(),
    );
    assert_eq!(
        serde_json::from_str::<Vec<IncidentFact>>(&json).unwrap(),
        incidents
    );
    let json = serde_json::to_string(&participants).unwrap();
    check(
        "record_facts_participants",
        &format!("record_facts.participants:\n{json}"),
        json.as_bytes(),
    );
    assert_eq!(
        serde_json::from_str::<Vec<ParticipantFact>>(&json).unwrap(),
        participants
    );
    let json = serde_json::to_string(&movements).unwrap();
    check(
        "record_facts_movements",
        &format!("record_facts.movements:\n{json}"),
        json.as_bytes(),
    );
    assert_eq!(
        serde_json::from_str::<Vec<MovementFact>>(&json).unwrap(),
        movements
    );

    fixture::report(&failures);
}
