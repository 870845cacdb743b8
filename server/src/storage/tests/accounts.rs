//! The account store, as every backend keeps it: areas and the grids below them, users and their
//! scope, devices and their cap, browser sessions and API tokens.

use crate::accounts::{AccountStore, ApiToken, Area, Device, NewUser, Role, new_api_token, now};

fn area(id: &str, parent: Option<&str>, level: &str) -> Area {
    Area {
        id: id.into(),
        parent_id: parent.map(String::from),
        level: level.into(),
        name: id.into(),
    }
}

fn new_user(username: &str, role: Role) -> NewUser {
    NewUser {
        username: username.into(),
        display_name: username.into(),
        role,
        password_hash: "x".into(),
    }
}

fn device(id: &str, user_id: &str) -> Device {
    Device {
        id: id.into(),
        user_id: user_id.into(),
        name: id.into(),
        created_at: now(),
        last_seen_at: None,
        revoked_at: None,
    }
}

fn token(id: &str, areas: &[&str]) -> ApiToken {
    ApiToken {
        id: id.into(),
        name: format!("{id} system"),
        areas: areas.iter().map(|a| a.to_string()).collect(),
        sensitive: false,
        created_at: "2026-11-01T00:00:00Z".into(),
        last_used_at: None,
        revoked_at: None,
    }
}

fn actor(n: u8) -> Vec<String> {
    vec![format!("{n:032x}")]
}

pub(crate) async fn accounts_conformance(s: &dyn AccountStore) {
    areas_and_scope(s).await;
    device_cap(s).await;
    sessions(s).await;
    deactivation_and_passwords(s).await;
    api_tokens(s).await;
}

async fn areas_and_scope(s: &dyn AccountStore) {
    for (id, parent, level) in [
        ("c1", None, "community"),
        ("g1", Some("c1"), "grid"),
        ("g2", Some("c1"), "grid"),
        ("c2", None, "community"),
        ("g3", Some("c2"), "grid"),
    ] {
        s.add_area(area(id, parent, level)).await.unwrap();
    }
    let err = s
        .add_area(area("g1", Some("c1"), "grid"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = s
        .add_area(area("g9", Some("nowhere"), "grid"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no parent area nowhere"), "{err}");
    assert!(s.add_area(area("x", None, "planet")).await.is_err());
    let ids: Vec<String> = s.areas().await.unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["c1", "c2", "g1", "g2", "g3"]);

    let wang = s
        .add_user(new_user("wang", Role::GridWorker))
        .await
        .unwrap();
    assert!(wang.active);
    assert_eq!(wang.scope_version, 0);
    let err = s
        .add_user(new_user("wang", Role::Office))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let admin = s.add_user(new_user("admin", Role::Admin)).await.unwrap();
    let names: Vec<String> = s
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["admin", "wang"]);
    assert!(s.user("nobody").await.unwrap().is_none());

    s.set_user_areas(&wang.id, &["c1".into()]).await.unwrap();
    let wang = s.user("wang").await.unwrap().unwrap();
    assert_eq!(wang.scope_version, 1, "the grids changed");
    assert_eq!(
        s.grids_of(&wang).await.unwrap(),
        (vec!["g1".into(), "g2".into()], vec![])
    );
    assert_eq!(s.user_areas(&wang.id).await.unwrap(), ["c1"]);

    s.set_user_areas(&wang.id, &["g1".into(), "g2".into()])
        .await
        .unwrap();
    let wang = s.user("wang").await.unwrap().unwrap();
    assert_eq!(wang.scope_version, 1, "the same grids, assigned otherwise");

    s.set_user_areas(&wang.id, &["g2".into(), "g3".into()])
        .await
        .unwrap();
    let wang = s.user("wang").await.unwrap().unwrap();
    assert_eq!(wang.scope_version, 2);
    assert_eq!(
        s.grids_of(&wang).await.unwrap(),
        (vec!["g2".into(), "g3".into()], vec!["g1".into()]),
        "g1 became a former grid"
    );
    let err = s
        .set_user_areas(&wang.id, &["g1".into(), "nowhere".into()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no area nowhere"), "{err}");
    assert_eq!(
        s.user_areas(&wang.id).await.unwrap(),
        ["g2", "g3"],
        "nothing changed"
    );

    s.set_user_areas(&wang.id, &["g1".into()]).await.unwrap();
    let wang = s.user("wang").await.unwrap().unwrap();
    assert_eq!(
        s.grids_of(&wang).await.unwrap(),
        (vec!["g1".into()], vec!["g2".into(), "g3".into()]),
        "back in g1, which is no longer former"
    );
    assert_eq!(
        s.grids_of(&admin).await.unwrap().0,
        ["g1", "g2", "g3"],
        "an admin works in every grid"
    );
}

async fn device_cap(s: &dyn AccountStore) {
    let qian = s.add_user(new_user("qian", Role::Office)).await.unwrap();
    s.set_dashboard_device(device("web", &qian.id), vec![9; 32], format!("{:032x}", 9))
        .await
        .unwrap();
    let (web, web_actor) = s.dashboard_device(&qian.id).await.unwrap().unwrap();
    assert_eq!((web.id.as_str(), web_actor), ("web", format!("{:032x}", 9)));
    assert!(
        s.add_device(device("a", &qian.id), vec![1; 32], actor(1), 2)
            .await
            .unwrap()
    );
    assert!(
        s.add_device(device("b", &qian.id), vec![2; 32], actor(2), 2)
            .await
            .unwrap()
    );
    assert!(
        !s.add_device(device("c", &qian.id), vec![3; 32], actor(3), 2)
            .await
            .unwrap(),
        "a third phone is one too many; the dashboard's device does not count"
    );
    assert!(
        s.device_by_token(&[3; 32]).await.unwrap().is_none(),
        "nothing stored"
    );
    assert!(s.revoke_device("a").await.unwrap());
    assert!(!s.revoke_device("nope").await.unwrap());
    let err = s
        .add_device(device("c", &qian.id), vec![3; 32], actor(1), 2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already bound"), "{err}");
    assert!(
        s.device_by_token(&[3; 32]).await.unwrap().is_none(),
        "nothing stored"
    );
    assert!(
        s.add_device(device("c", &qian.id), vec![3; 32], actor(3), 2)
            .await
            .unwrap()
    );

    let (found, user) = s.device_by_token(&[3; 32]).await.unwrap().unwrap();
    assert_eq!((found.id.as_str(), user.username.as_str()), ("c", "qian"));
    assert!(found.last_seen_at.is_none());
    s.touch_device("c").await.unwrap();
    let (found, _) = s.device_by_token(&[3; 32]).await.unwrap().unwrap();
    assert!(found.last_seen_at.is_some());
    let (revoked, _) = s.device_by_token(&[1; 32]).await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some(), "found whether revoked or not");
    assert_eq!(s.device_actors("c").await.unwrap(), actor(3));
    let mut ids: Vec<String> = s
        .devices(Some("qian"))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c", "web"]);
    assert!(s.devices(Some("wang")).await.unwrap().is_empty());
    assert!(s.devices(None).await.unwrap().len() >= 4);
}

async fn sessions(s: &dyn AccountStore) {
    let zhao = s.add_user(new_user("zhao", Role::Office)).await.unwrap();
    let (created, expires) = ("2026-11-01T00:00:00Z", "2026-11-01T12:00:00Z");
    s.create_session(vec![1; 32], &zhao.id, "csrf", created, expires)
        .await
        .unwrap();
    let found = s
        .session(&[1; 32], "2026-11-01T06:00:00Z")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.user.username.as_str(), found.csrf.as_str()),
        ("zhao", "csrf")
    );
    assert_eq!(found.expires_at, expires);
    let later = "2026-11-01T13:00:00Z";
    assert!(
        s.session(&[1; 32], later).await.unwrap().is_none(),
        "expired"
    );
    assert!(
        s.session(&[2; 32], "2026-11-01T06:00:00Z")
            .await
            .unwrap()
            .is_none()
    );
    s.end_session(&[1; 32]).await.unwrap();
    assert!(
        s.session(&[1; 32], "2026-11-01T06:00:00Z")
            .await
            .unwrap()
            .is_none(),
        "ended"
    );

    s.create_session(vec![3; 32], &zhao.id, "a", created, expires)
        .await
        .unwrap();
    s.create_session(vec![4; 32], &zhao.id, "b", later, "2026-11-02T00:00:00Z")
        .await
        .unwrap();
    assert!(
        s.session(&[3; 32], "2026-11-01T06:00:00Z")
            .await
            .unwrap()
            .is_none(),
        "a new session sweeps the expired ones away"
    );
    assert!(s.session(&[4; 32], later).await.unwrap().is_some());
}

async fn deactivation_and_passwords(s: &dyn AccountStore) {
    let sun = s.add_user(new_user("sun", Role::GridWorker)).await.unwrap();
    s.add_device(device("phone", &sun.id), vec![7; 32], vec![], 10)
        .await
        .unwrap();
    let far = "2999-01-01T00:00:00Z";
    s.create_session(vec![5; 32], &sun.id, "c", "2026-11-01T00:00:00Z", far)
        .await
        .unwrap();
    s.set_password(&sun.id, "y").await.unwrap();
    let now = "2026-11-02T00:00:00Z";
    assert!(
        s.session(&[5; 32], now).await.unwrap().is_none(),
        "a new password ends sessions"
    );
    let (phone, user) = s.device_by_token(&[7; 32]).await.unwrap().unwrap();
    assert!(phone.revoked_at.is_none(), "devices stay signed in");
    assert_eq!(user.password_hash, "y");

    s.create_session(vec![6; 32], &sun.id, "c", "2026-11-01T00:00:00Z", far)
        .await
        .unwrap();
    s.set_active(&sun.id, false).await.unwrap();
    assert!(!s.user("sun").await.unwrap().unwrap().active);
    s.set_active(&sun.id, true).await.unwrap();
    let (phone, user) = s.device_by_token(&[7; 32]).await.unwrap().unwrap();
    assert!(user.active);
    assert!(
        phone.revoked_at.is_some(),
        "the old phone came back to life"
    );
    assert!(
        s.session(&[6; 32], now).await.unwrap().is_none(),
        "the old browser came back"
    );
}

async fn api_tokens(s: &dyn AccountStore) {
    for (id, parent, level) in [
        ("m1", None, "community"),
        ("mg1", Some("m1"), "grid"),
        ("mg2", Some("m1"), "grid"),
        ("g9", None, "grid"),
    ] {
        s.add_area(area(id, parent, level)).await.unwrap();
    }
    let (secret, hash) = new_api_token().unwrap();
    s.add_api_token(token("t1", &["m1"]), hash.clone())
        .await
        .unwrap();
    let (found, grids) = s.api_token_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found.areas, ["m1"]);
    assert_eq!(grids, ["mg1", "mg2"]);
    assert!(
        s.api_token_by_hash(secret.as_bytes())
            .await
            .unwrap()
            .is_none(),
        "the secret itself is not what is stored"
    );
    let err = s
        .add_api_token(token("t2", &["mg1", "nowhere"]), vec![7; 32])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert_eq!(s.api_tokens().await.unwrap().len(), 1, "nothing stored");
    s.add_api_token(token("t3", &["g9", "mg1"]), vec![8; 32])
        .await
        .unwrap();
    let listed = s.api_tokens().await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t1", "t3"]
    );
    assert_eq!(listed[1].areas, ["g9", "mg1"]);

    s.touch_api_token("t1", "2026-11-05T00:00:00Z")
        .await
        .unwrap();
    assert!(s.revoke_api_token("t1").await.unwrap());
    assert!(!s.revoke_api_token("nope").await.unwrap());
    let (revoked, _) = s.api_token_by_hash(&hash).await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        revoked.last_used_at.as_deref(),
        Some("2026-11-05T00:00:00Z")
    );
}
