//! The read API for other systems (`/api/v1`) against a real relay on 127.0.0.1 with records
//! synced from real replicas: every endpoint its OpenAPI document lists, changed-since paging,
//! scope, sensitive data and revocation. Tokens are made with the admin command an operator
//! runs (`gridsync-server admin token add`).

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gridsync_core::Replica;
use gridsync_core::record::Kind;
use gridsync_core::record::sensitive::private_id;
use gridsync_e2e::{TestServer, fields, household, sync};
use gridsync_server::admin::{self, AdminCommand, TokenCommand};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ID_NUMBER: &str = "420102195003071234";
const PHONE: &str = "13900001111";

/// A token made as an admin makes one; returns (id, secret).
async fn token(
    server: &TestServer,
    name: &str,
    areas: &[&str],
    sensitive: bool,
) -> (String, String) {
    let cmd = AdminCommand::Token(TokenCommand::Add {
        name: name.into(),
        areas: areas.iter().map(|a| a.to_string()).collect(),
        sensitive,
    });
    let out = admin::run(server.accounts.as_ref(), cmd, &mut &b""[..])
        .await
        .unwrap();
    let secret = out.lines().last().unwrap().to_string();
    let id = out
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_string();
    (id, secret)
}

/// `GET path` with the token (if any): the status, the content type and the body as JSON
/// (`Value::Null` when it is not JSON).
async fn get(server: &TestServer, path: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
        server.addr
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("the relay answers")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(body)
    } else {
        body.to_string()
    };
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, header("content-type").unwrap_or_default(), json)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One record of every kind in `grid`, as a grid worker writes them; ids by kind (the
/// household's private part included).
fn seed(r: &mut Replica) -> BTreeMap<Kind, String> {
    let mut create = |kind: Kind, v: Value| r.create(kind, fields(v)).unwrap().id;
    let h = create(
        Kind::Household,
        json!({
            "head_name": "张三", "household_type": "registered",
            "residents": [{"name": "张三", "id_number": ID_NUMBER, "disability_type": "肢体", "phone": "027-1"}],
        }),
    );
    let visit = json!({
        "household_id": h, "visit_type": "routine", "outcome": "met",
        "started_at": "2026-11-03T09:00:00+08:00", "observations": "家中整洁",
    });
    let v = create(Kind::Visit, visit);
    let p = create(
        Kind::Patrol,
        json!({"started_at": "2026-11-04T20:00:00+08:00"}),
    );
    let c = create(
        Kind::Case,
        json!({"case_type": "disability", "household_id": h, "cause": "行动不便"}),
    );
    let rep = create(
        Kind::Report,
        json!({
            "category": "safety_hazard", "urgency": "urgent", "description": "楼道堆放杂物",
            "discovered_at": "2026-11-05T10:00:00+08:00",
        }),
    );
    let unit = create(
        Kind::Unit,
        json!({"name": "区税务局", "unit_type": "government"}),
    );
    let volunteer = create(
        Kind::Volunteer,
        json!({"name": "陈志强", "phone": PHONE, "unit_id": unit, "post": "巡逻岗"}),
    );
    let activity = create(
        Kind::Activity,
        json!({
            "activity_type": "clean_up", "title": "楼道清理", "organiser_unit_id": unit,
            "started_at": "2026-11-06T09:00:00+08:00",
            "participants": [{"volunteer_id": volunteer, "hours": 2.5}],
        }),
    );
    let stock = create(
        Kind::Stock,
        json!({
            "item": "大米", "measure": "袋",
            "movements": [{"kind": "in", "quantity": 10, "at": "2026-11-07T09:00:00+08:00"}],
        }),
    );
    let task = create(
        Kind::Task,
        json!({"title": "清理消防通道", "source": "office", "deadline": "2026-11-20T18:00:00+08:00"}),
    );
    BTreeMap::from([
        (Kind::HouseholdPrivate, private_id(&h)),
        (Kind::Household, h),
        (Kind::Visit, v),
        (Kind::Patrol, p),
        (Kind::Case, c),
        (Kind::Report, rep),
        (Kind::Unit, unit),
        (Kind::Volunteer, volunteer),
        (Kind::Activity, activity),
        (Kind::Stock, stock),
        (Kind::Task, task),
    ])
}

/// Every record of a list, page by page from `after` (at most 100 pages); the records in order
/// and the last cursor.
async fn every_page(
    server: &TestServer,
    query: &str,
    after: u64,
    limit: usize,
    token: &str,
) -> (Vec<Value>, u64, usize) {
    let (mut records, mut cursor, mut pages) = (Vec::new(), after, 0);
    for _ in 0..100 {
        let path = format!("/api/v1/records?{query}&after={cursor}&limit={limit}");
        let (status, _, page) = get(server, &path, Some(token)).await;
        assert_eq!(status, 200, "{path}: {page}");
        let got = page["records"].as_array().unwrap();
        assert!(got.len() <= limit);
        let next = page["cursor"].as_u64().unwrap();
        assert!(next >= cursor, "the cursor never goes back");
        records.extend(got.iter().cloned());
        cursor = next;
        pages += 1;
        if !page["more"].as_bool().unwrap() {
            return (records, cursor, pages);
        }
    }
    panic!("more than 100 pages");
}

/// Whether `value` is what `schema` (OpenAPI 3.1, resolved in `doc`) describes: types, required
/// properties, items and map values. Returns what does not match.
fn mismatches(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return mismatches(doc, &doc["components"]["schemas"][name], value, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let is = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        return vec![format!("{at}: {value} is not {types:?}")];
    }
    let mut out = Vec::new();
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !obj.contains_key(name) {
                out.push(format!("{at}: `{name}` is missing"));
            }
        }
        for (name, sub) in props {
            if let Some(v) = obj.get(name) {
                out.extend(mismatches(doc, sub, v, &format!("{at}.{name}")));
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, v) in list.iter().enumerate() {
            out.extend(mismatches(doc, items, v, &format!("{at}[{i}]")));
        }
    }
    if let (Some(values), Some(obj)) = (schema.get("additionalProperties"), value.as_object())
        && values.is_object()
    {
        for (k, v) in obj {
            out.extend(mismatches(doc, values, v, &format!("{at}.{k}")));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_every_endpoint_the_openapi_document_lists_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let ids = seed(&mut wang);
    wang.update(&ids[&Kind::Case], fields(json!({"status": "open"})))
        .unwrap();
    sync(&mut wang).await;
    let (_, secret) = token(&server, "县民政系统 county", &["m1"], true).await;

    let (status, kind, doc) = get(&server, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/json"), "{kind}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let mut called = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert_eq!(method, "get", "{path}: the API only reads");
            let mut url = path.replace("{id}", &ids[&Kind::Case]);
            let mut query = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                if p["in"] == "path" {
                    assert!(
                        !url.contains(&format!("{{{name}}}")),
                        "{path}: no value for {name}"
                    );
                } else if p["required"] == true {
                    panic!("{path}: a required query parameter `{name}` this test cannot fill");
                } else if name == "month" {
                    query.push("month=2026-11".to_string());
                }
            }
            if !query.is_empty() {
                url = format!("{url}?{}", query.join("&"));
            }
            let responses = op["responses"].as_object().unwrap();
            let (ok, documented) = responses
                .iter()
                .find(|(code, _)| code.starts_with('2'))
                .unwrap_or_else(|| panic!("{path}: no success documented"));
            let (status, kind, body) = get(&server, &url, Some(&secret)).await;
            assert_eq!(status.to_string(), *ok, "{url}: {body}");
            assert!(kind.starts_with("application/json"), "{url}: {kind}");
            let schema = &documented["content"]["application/json"]["schema"];
            let wrong = mismatches(&doc, schema, &body, path);
            assert!(
                wrong.is_empty(),
                "{url} answers unlike its document: {wrong:?}\n{body}"
            );

            // Without a token: the documented refusal, in JSON.
            let (status, kind, body) = get(&server, &url, None).await;
            assert_eq!(status, 401, "{url}");
            assert!(responses.contains_key("401"), "{path}: 401 undocumented");
            assert!(kind.starts_with("application/json") && body["error"].is_string());
            called.insert(path.clone());
        }
    }
    assert!(called.len() >= 6, "{called:?}");
    // What the calls saw is the data the replica synced.
    let (_, _, case) = get(
        &server,
        &format!("/api/v1/records/{}", ids[&Kind::Case]),
        Some(&secret),
    )
    .await;
    assert_eq!(case["record"]["status"], "open");
    assert_eq!(case["record"]["cause"], "行动不便");
    let (_, _, history) = get(
        &server,
        &format!("/api/v1/records/{}/history", ids[&Kind::Case]),
        Some(&secret),
    )
    .await;
    let changes = history["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{history}");
    assert!(changes[0]["created"].as_bool().unwrap());
    let status = changes[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "status")
        .unwrap();
    // A new case is a draft without a status field: the change set it.
    assert_eq!(
        (status.get("before"), &status["after"]),
        (None, &json!("open"))
    );
    assert_eq!(changes[1]["author"], "wang");
    let (_, _, month) = get(
        &server,
        "/api/v1/stats/monthly?month=2026-11",
        Some(&secret),
    )
    .await;
    assert_eq!(month["total"]["visits"], 1, "{month}");
    assert_eq!(month["total"]["activities"]["by"]["clean_up"], 1, "{month}");
    assert_eq!(month["total"]["volunteer_hours"], 2.5, "{month}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_changed_since_pages_hold_every_record_once_then_only_what_changed_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let mut made = BTreeSet::new();
    for i in 0..17 {
        made.insert(household(&mut wang, &format!("户主{i}")));
    }
    let first: Vec<String> = made.iter().take(5).cloned().collect();
    sync(&mut wang).await;
    // Records edited after others were created: each must still come once, at its newest change.
    for (n, id) in first.iter().enumerate() {
        wang.update(id, fields(json!({"notes": format!("第{n}次修改")})))
            .unwrap();
        sync(&mut wang).await;
    }
    let (_, secret) = token(&server, "街道办 street office", &["g1"], false).await;

    let (records, cursor, pages) = every_page(&server, "kind=household", 0, 4, &secret).await;
    assert_eq!(pages, 5, "17 records in pages of 4");
    let seen: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let unique: BTreeSet<&str> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a record came twice: {seen:?}");
    assert_eq!(unique, made.iter().map(String::as_str).collect());
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest change first: {seqs:?}"
    );
    assert_eq!(cursor, *seqs.last().unwrap());
    let edited = records
        .iter()
        .find(|r| r["id"] == first[4].as_str())
        .unwrap();
    assert_eq!(
        edited["record"]["notes"], "第4次修改",
        "each record as it is now"
    );

    // Asked again from the cursor: nothing, and the cursor stays.
    let (status, _, page) = get(
        &server,
        &format!("/api/v1/records?after={cursor}"),
        Some(&secret),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({"records": [], "cursor": cursor, "more": false})
    );

    // Two old records edited and one new: exactly those three come after the cursor.
    wang.update(&first[0], fields(json!({"notes": "再次走访后更新"})))
        .unwrap();
    wang.delete(&first[1]).unwrap();
    let new = household(&mut wang, "新户");
    sync(&mut wang).await;
    let (after, _, _) = every_page(&server, "kind=household", cursor, 2, &secret).await;
    let ids: BTreeSet<&str> = after.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([first[0].as_str(), first[1].as_str(), new.as_str()])
    );
    let by_id = |id: &str| after.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(by_id(&first[0])["record"]["notes"], "再次走访后更新");
    assert_eq!(
        by_id(&first[1])["deleted"],
        true,
        "a deletion is listed, to be dropped"
    );
    assert_eq!(by_id(&new)["record"]["head_name"], "新户");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_token_scoped_to_g1_never_sees_g2() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let mut li = server.worker(&dir.path().join("li"), "li", &["g2"]).await;
    let mine = seed(&mut wang);
    let theirs = seed(&mut li);
    sync(&mut wang).await;
    sync(&mut li).await;
    let (_, g1) = token(&server, "一网格 g1", &["g1"], true).await;
    let (_, m1) = token(&server, "社区 m1", &["m1"], true).await;

    let (records, _, _) = every_page(&server, "x=1", 0, 100, &g1).await;
    assert_eq!(
        records.len(),
        mine.len(),
        "every g1 record, private parts included"
    );
    assert!(records.iter().all(|r| r["grid_id"] == "g1"));
    let (all, _, _) = every_page(&server, "x=1", 0, 100, &m1).await;
    assert_eq!(
        all.len(),
        mine.len() + theirs.len(),
        "the community token reads both"
    );

    for id in theirs.values() {
        for path in [
            format!("/api/v1/records/{id}"),
            format!("/api/v1/records/{id}/history"),
        ] {
            let (status, _, body) = get(&server, &path, Some(&g1)).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert!(body["error"].is_string());
            assert_eq!(get(&server, &path, Some(&m1)).await.0, 200, "{path}");
        }
    }
    for path in [
        "/api/v1/records?grid=g2",
        "/api/v1/stats/monthly?grid=g2",
        "/api/v1/records?grid=g9",
    ] {
        assert_eq!(get(&server, path, Some(&g1)).await.0, 404, "{path}");
    }
    let (_, _, grids) = get(&server, "/api/v1/grids", Some(&g1)).await;
    assert_eq!(grids.as_array().unwrap().len(), 1, "{grids}");
    assert_eq!(grids[0]["id"], "g1");
    assert!(grids[0]["head_seq"].as_u64().unwrap() > 0);
    let (_, _, month) = get(&server, "/api/v1/stats/monthly?month=2026-11", Some(&g1)).await;
    assert_eq!(month["total"]["visits"], 1, "{month}");
    assert_eq!(month["grids"].as_array().unwrap().len(), 1, "{month}");
    let (_, _, both) = get(&server, "/api/v1/stats/monthly?month=2026-11", Some(&m1)).await;
    assert_eq!(both["total"]["visits"], 2, "{both}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_token_without_sensitive_data_never_sees_an_id_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let ids = seed(&mut wang);
    // A resident added later: the ID number is in the history of the private part.
    let h = &ids[&Kind::Household];
    let mut residents = wang.get(h).unwrap().fields["residents"].clone();
    residents
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "张小三", "id_number": "420102201001011234", "health": "哮喘"}));
    wang.update(h, fields(json!({"residents": residents})))
        .unwrap();
    sync(&mut wang).await;
    let (_, plain) = token(&server, "街道办 street office", &["g1"], false).await;
    let (_, full) = token(&server, "民政 civil affairs", &["g1"], true).await;

    // Everything the plain token can read, every answer of every endpoint put together.
    let mut seen = String::new();
    let (records, _, _) = every_page(&server, "x=1", 0, 3, &plain).await;
    seen.push_str(&Value::Array(records.clone()).to_string());
    for r in &records {
        let id = r["id"].as_str().unwrap();
        for path in [
            format!("/api/v1/records/{id}"),
            format!("/api/v1/records/{id}/history"),
        ] {
            let (status, _, body) = get(&server, &path, Some(&plain)).await;
            assert_eq!(status, 200, "{path}");
            seen.push_str(&body.to_string());
        }
    }
    for path in [
        "/api/v1/stats/monthly?month=2026-11",
        "/api/v1/grids",
        "/api/v1/schema",
    ] {
        seen.push_str(&get(&server, path, Some(&plain)).await.2.to_string());
    }
    assert!(records.iter().all(|r| r["kind"] != "household_private"));
    assert_eq!(
        records.len(),
        ids.len() - 1,
        "every record but the private part"
    );
    for secret in [ID_NUMBER, "420102201001011234", "肢体", "哮喘", PHONE] {
        assert!(!seen.contains(secret), "the plain token read {secret}");
    }
    let household = records.iter().find(|r| r["id"] == h.as_str()).unwrap();
    assert_eq!(
        household["record"]["residents"][1]["name"], "张小三",
        "the rest is there"
    );
    assert_eq!(household["record"]["residents"][0]["phone"], "027-1");
    let private = format!("/api/v1/records/{}", ids[&Kind::HouseholdPrivate]);
    assert_eq!(get(&server, &private, Some(&plain)).await.0, 404);
    let (status, _, body) = get(
        &server,
        "/api/v1/records?kind=household_private",
        Some(&plain),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // The token made with --sensitive reads them: in the private part and the volunteer.
    let (status, _, part) = get(&server, &private, Some(&full)).await;
    assert_eq!(status, 200);
    assert_eq!(
        part["record"]["residents"][0]["id_number"], ID_NUMBER,
        "{part}"
    );
    let (_, _, history) = get(&server, &format!("{private}/history"), Some(&full)).await;
    assert!(
        history.to_string().contains("420102201001011234"),
        "{history}"
    );
    let volunteer = format!("/api/v1/records/{}", ids[&Kind::Volunteer]);
    assert_eq!(
        get(&server, &volunteer, Some(&full)).await.2["record"]["phone"],
        PHONE
    );
    let (records, _, _) = every_page(&server, "x=1", 0, 100, &full).await;
    assert_eq!(records.len(), ids.len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_revoked_token_gets_401() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    household(&mut wang, "张三");
    sync(&mut wang).await;
    let (id, secret) = token(&server, "县平台 county", &["g1"], false).await;
    let (status, _, page) = get(&server, "/api/v1/records", Some(&secret)).await;
    assert_eq!(status, 200);
    assert_eq!(page["records"].as_array().unwrap().len(), 1);

    let revoke = AdminCommand::Token(TokenCommand::Revoke { id: id.clone() });
    admin::run(server.accounts.as_ref(), revoke, &mut &b""[..])
        .await
        .unwrap();
    for path in ["/api/v1/records", "/api/v1/grids", "/api/v1/stats/monthly"] {
        let (status, kind, body) = get(&server, path, Some(&secret)).await;
        assert_eq!(status, 401, "{path}");
        assert!(kind.starts_with("application/json"));
        assert!(body["error"].as_str().unwrap().contains("停用"), "{body}");
    }
    let (status, _, body) = get(&server, "/api/v1/records", Some("gsapi_0000")).await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("无效"), "{body}");
    let list = admin::run(
        server.accounts.as_ref(),
        AdminCommand::Token(TokenCommand::List),
        &mut &b""[..],
    )
    .await
    .unwrap();
    let line = list.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(line.contains("\trevoked "), "{list}");
    assert!(!line.contains("\tnever\t"), "it was used before: {list}");
    server.stop().await;
}
