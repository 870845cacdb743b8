//! The co-construction pages and the assessment on a known data set: every figure exact.
//! Records are uploaded as the workers' phones would (changes accepted by the relay), in the
//! month before this one, so that every time in them is in the past.

use chrono::{Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use gridsync_core::record::Kind;
use serde_json::{Map, Value, json};

use super::pages::{strip_tags, table};
use super::*;

/// A grid worker's phone: identity and actor.
fn phone(username: &str, grid: &str) -> Identity {
    let mut actor = username.as_bytes().to_vec();
    actor.resize(16, b'-');
    Identity {
        user_id: format!("u-{username}"),
        username: username.into(),
        display_name: username.into(),
        role: Role::GridWorker,
        device_id: format!("phone-{username}"),
        grids: vec![grid.into()],
        former_grids: vec![],
        actors: vec![hex::encode(actor)],
        readable_kinds: crate::storage::KindFilter::All,
    }
}

/// Creates a record as `who`'s phone does and uploads it.
async fn put(state: &AppState, who: &Identity, kind: Kind, id: &str, fields: Value) {
    let grid = who.grids[0].as_str();
    let Value::Object(fields) = fields else {
        panic!("fields must be an object")
    };
    let mut all = Map::new();
    for (k, v) in [
        ("id", json!(id)),
        ("kind", json!(kind.as_str())),
        ("grid_id", json!(grid)),
        ("created_by", json!(who.username)),
        ("created_at", json!("2026-01-01T00:00:00Z")),
        ("schema_version", json!(1)),
    ] {
        all.insert(k.into(), v);
    }
    for list in kind.append_only_fields() {
        all.insert(list.into(), json!([]));
    }
    for text in kind.text_fields() {
        all.insert(text.into(), json!(""));
    }
    all.extend(fields);
    let actor: ActorId = who.actors[0].parse().unwrap();
    let mut doc = Automerge::new().with_actor(actor);
    let mut tx = doc.transaction();
    gridsync_core::doc::reconcile_root(&mut tx, kind, &Map::new(), &all).unwrap();
    tx.commit_with(CommitOptions::default().with_message(who.username.clone()));
    let up = UpChange {
        doc_id: id.into(),
        grid: grid.into(),
        bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
    };
    let (rejected, _) = state.relay.accept(who, vec![up]).await.unwrap();
    assert!(rejected.is_empty(), "{id}: {rejected:?}");
}

/// The first day of last month in the community's time, and an instant in it:
/// `at(day, "09:00")` is that day of the month (1-based) at 09:00 local, as RFC 3339.
struct Month {
    first: NaiveDate,
}

impl Month {
    fn last() -> Month {
        let china = FixedOffset::east_opt(8 * 3600).unwrap();
        let today = Utc::now().with_timezone(&china).date_naive();
        let this = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap();
        Month {
            first: this.checked_sub_months(chrono::Months::new(1)).unwrap(),
        }
    }

    fn at(&self, day: u32, time: &str) -> String {
        let china = FixedOffset::east_opt(8 * 3600).unwrap();
        let d = self.first + Duration::days(i64::from(day) - 1);
        let t = chrono::NaiveTime::parse_from_str(time, "%H:%M").unwrap();
        china
            .from_local_datetime(&d.and_time(t))
            .unwrap()
            .to_rfc3339()
    }

    fn date(&self, days: i64) -> String {
        (self.first + Duration::days(days)).to_string()
    }

    fn param(&self) -> String {
        self.first.format("%Y-%m").to_string()
    }
}

/// Community m1 with grids g1 (workers wang and li) and g2 (worker zhou), and last month's
/// work in them.
async fn known_month(state: &AppState) -> Month {
    let m = Month::last();
    state
        .accounts
        .add_area(Area {
            id: "g2".into(),
            parent_id: Some("m1".into()),
            level: "grid".into(),
            name: "第二网格".into(),
        })
        .await
        .unwrap();
    for (username, name, grid) in [
        ("wang", "王芳", "g1"),
        ("li", "李娜", "g1"),
        ("zhou", "周强", "g2"),
    ] {
        let user = state
            .accounts
            .add_user(NewUser {
                username: username.into(),
                display_name: name.into(),
                role: Role::GridWorker,
                password_hash: accounts::hash_password("pw-2026").unwrap(),
            })
            .await
            .unwrap();
        state
            .accounts
            .set_user_areas(&user.id, &[grid.into()])
            .await
            .unwrap();
    }
    let (wang, li, zhou) = (phone("wang", "g1"), phone("li", "g1"), phone("zhou", "g2"));
    let household = |head: &str, worker: &str, due: Option<String>| {
        let mut f =
            json!({"head_name": head, "household_type": "registered", "assigned_worker": worker});
        if let Some(d) = due {
            f["next_visit_due"] = json!(d);
        }
        f
    };
    // Due and visited; due, only nobody home; not due until after the month; never visited.
    put(
        state,
        &wang,
        Kind::Household,
        "h1",
        household("张一", "wang", Some(m.date(40))),
    )
    .await;
    put(
        state,
        &wang,
        Kind::Household,
        "h2",
        household("张二", "wang", Some(m.date(9))),
    )
    .await;
    put(
        state,
        &wang,
        Kind::Household,
        "h3",
        household("张三", "wang", Some(m.date(70))),
    )
    .await;
    put(
        state,
        &li,
        Kind::Household,
        "h4",
        household("李四", "li", None),
    )
    .await;
    put(
        state,
        &zhou,
        Kind::Household,
        "h5",
        household("周五", "zhou", Some(m.date(3))),
    )
    .await;
    let visit = |h: &str, outcome: &str, day: u32| json!({"household_id": h, "visit_type": "routine", "started_at": m.at(day, "10:00"), "outcome": outcome});
    put(state, &wang, Kind::Visit, "v1", visit("h1", "met", 4)).await;
    put(
        state,
        &wang,
        Kind::Visit,
        "v2",
        visit("h2", "nobody_home", 5),
    )
    .await;
    put(state, &zhou, Kind::Visit, "v3", visit("h5", "met", 6)).await;

    put(
        state,
        &wang,
        Kind::Unit,
        "u1",
        json!({"name": "区税务局", "unit_type": "government", "contact_person": "刘主任"}),
    )
    .await;
    put(
        state,
        &wang,
        Kind::Volunteer,
        "vol1",
        json!({"name": "陈志强", "unit_id": "u1", "post": "治安巡逻岗"}),
    )
    .await;
    put(
        state,
        &wang,
        Kind::Volunteer,
        "vol2",
        json!({"name": "刘洋"}),
    )
    .await;
    put(state, &wang, Kind::Activity, "a1", json!({
        "activity_type": "clean_up", "title": "清理楼道杂物", "started_at": m.at(5, "09:00"),
        "organiser_unit_id": "u1",
        "participants": [{"volunteer_id": "vol1", "hours": 2.5}, {"volunteer_id": "vol2", "hours": 3}, {"unit_id": "u1", "hours": 4}],
    })).await;
    put(state, &wang, Kind::Activity, "a2", json!({
        "activity_type": "coordination_meeting", "title": "共建联席会议", "started_at": m.at(10, "14:00"),
        "participants": [{"volunteer_id": "vol1", "hours": 1.5}],
        "decisions": [{"text": "为3栋加装楼道照明"}],
    })).await;

    put(
        state,
        &wang,
        Kind::Stock,
        "s1",
        json!({
            "item": "大米", "measure": "袋", "low_at": 5,
            "movements": [
                {"kind": "in", "quantity": 10, "at": m.at(1, "09:00"), "donor_unit_id": "u1"},
                {"kind": "out", "quantity": 3, "at": m.at(2, "09:00"), "household_id": "h1"},
                {"kind": "out", "quantity": 4, "at": m.at(3, "09:00"), "household_id": "h2"},
            ],
        }),
    )
    .await;
    put(
        state,
        &wang,
        Kind::Stock,
        "s2",
        json!({
            "item": "食用油", "measure": "桶", "low_at": 2,
            "movements": [
                {"kind": "in", "quantity": 6, "at": m.at(1, "10:00")},
                {"kind": "out", "quantity": 1, "at": m.at(2, "10:00"), "household_id": "h1"},
            ],
        }),
    )
    .await;

    let task = |title: &str, to: Value, deadline: String, status: &str, handled: Option<String>| {
        let mut f =
            json!({"title": title, "source": "office", "deadline": deadline, "status": status});
        for (k, v) in to.as_object().unwrap() {
            f[k] = v.clone();
        }
        if let Some(at) = handled {
            f["updates"] = json!([{"at": at, "status": "handled", "note": "已处置"}]);
        }
        f
    };
    let to = |w: &str| json!({"assignee": w, "household_id": "h1"});
    put(
        state,
        &wang,
        Kind::Task,
        "t1",
        task(
            "修路灯",
            to("wang"),
            m.at(5, "18:00"),
            "verified",
            Some(m.at(5, "10:00")),
        ),
    )
    .await;
    put(
        state,
        &wang,
        Kind::Task,
        "t2",
        task(
            "清理通道",
            to("wang"),
            m.at(6, "18:00"),
            "handled",
            Some(m.at(8, "10:00")),
        ),
    )
    .await;
    put(
        state,
        &li,
        Kind::Task,
        "t3",
        task("走访核实", to("li"), m.at(7, "18:00"), "accepted", None),
    )
    .await;
    put(
        state,
        &wang,
        Kind::Task,
        "t4",
        task(
            "捐赠对接",
            json!({"assignee_unit_id": "u1"}),
            m.at(9, "18:00"),
            "handled",
            Some(m.at(9, "09:00")),
        ),
    )
    .await;
    // Due next month: not in last month's figures.
    let later = (Utc::now() + Duration::days(40)).to_rfc3339();
    put(
        state,
        &wang,
        Kind::Task,
        "t5",
        task("下月任务", to("wang"), later, "dispatched", None),
    )
    .await;

    // Critical reports (20 minutes): one phoned in on time, one only synced now (late).
    let report = |day: u32, phoned: Option<String>| {
        let mut f = json!({"category": "safety_hazard", "urgency": "critical", "description": "楼道堆放杂物", "discovered_at": m.at(day, "09:00")});
        if let Some(p) = phoned {
            f["phoned_in_at"] = json!(p);
        }
        f
    };
    put(
        state,
        &wang,
        Kind::Report,
        "r1",
        report(3, Some(m.at(3, "09:10"))),
    )
    .await;
    put(state, &wang, Kind::Report, "r2", report(4, None)).await;

    let patrol = |day: u32, start: &str, end: Option<&str>| {
        let mut f = json!({"started_at": m.at(day, start)});
        if let Some(e) = end {
            f["ended_at"] = json!(m.at(day, e));
        }
        f
    };
    put(
        state,
        &wang,
        Kind::Patrol,
        "p1",
        patrol(2, "20:00", Some("22:30")),
    )
    .await;
    put(
        state,
        &wang,
        Kind::Patrol,
        "p2",
        patrol(4, "20:00", Some("21:00")),
    )
    .await;
    put(state, &li, Kind::Patrol, "p3", patrol(4, "20:00", None)).await;
    put(
        state,
        &zhou,
        Kind::Patrol,
        "p4",
        patrol(6, "19:00", Some("21:00")),
    )
    .await;
    m
}

/// A table's body as text, the first cell of each row naming it.
fn rows(page: &str, id: &str) -> Vec<Vec<String>> {
    table(page, id)
        .into_iter()
        .skip(1)
        .map(|r| r.into_iter().map(|c| c.text).collect())
        .collect()
}

/// The row of a table whose first cell is `name`, by column header.
fn row_of(page: &str, id: &str, name: &str) -> std::collections::HashMap<String, String> {
    let t = table(page, id);
    let head: Vec<String> = t[0].iter().map(|c| c.text.clone()).collect();
    let row = t
        .iter()
        .skip(1)
        .find(|r| r[0].text.contains(name) || r.iter().any(|c| c.text == name))
        .unwrap_or_else(|| panic!("no row {name} in #{id}: {:?}", rows(page, id)));
    head.into_iter()
        .zip(row.iter().map(|c| c.text.clone()))
        .collect()
}

#[tokio::test]
async fn test_assessment_figures_per_worker_and_grid_on_a_known_month() {
    let (_dir, state) = server().await;
    let m = known_month(&state).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (status, _, page) = send(
        &state,
        get(&format!("/assessment?month={}", m.param()), &cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let wang = row_of(&page, "by-worker", "王芳");
    let expect = |row: &std::collections::HashMap<String, String>, pairs: &[(&str, &str)]| {
        for (col, want) in pairs {
            assert_eq!(
                row.get(*col).map(String::as_str),
                Some(*want),
                "{col} in {row:?}"
            );
        }
    };
    expect(
        &wang,
        &[
            ("应走访户", "2"),
            ("已走访户", "1"),
            ("走访覆盖率", "50%"),
            ("到期任务", "2"),
            ("按期办理", "1"),
            ("按期办理率", "50%"),
            ("社情民意", "2"),
            ("按时报送", "1"),
            ("按时报送率", "50%"),
            ("巡逻时长（小时）", "3.5"),
        ],
    );
    expect(
        &row_of(&page, "by-worker", "李娜"),
        &[
            ("应走访户", "1"),
            ("已走访户", "0"),
            ("走访覆盖率", "0%"),
            ("到期任务", "1"),
            ("按期办理", "0"),
            ("社情民意", "0"),
            ("按时报送率", "—"),
            ("巡逻时长（小时）", "0"),
        ],
    );
    expect(
        &row_of(&page, "by-worker", "周强"),
        &[
            ("应走访户", "1"),
            ("已走访户", "1"),
            ("走访覆盖率", "100%"),
            ("巡逻时长（小时）", "2"),
        ],
    );
    // The unit's task counts for its grid only.
    expect(
        &row_of(&page, "by-grid", "第一网格"),
        &[
            ("应走访户", "3"),
            ("已走访户", "1"),
            ("走访覆盖率", "33.3%"),
            ("到期任务", "4"),
            ("按期办理", "2"),
            ("按期办理率", "50%"),
            ("社情民意", "2"),
            ("按时报送", "1"),
            ("巡逻时长（小时）", "3.5"),
        ],
    );
    expect(
        &row_of(&page, "by-grid", "合计"),
        &[
            ("应走访户", "4"),
            ("已走访户", "2"),
            ("走访覆盖率", "50%"),
            ("到期任务", "4"),
            ("巡逻时长（小时）", "5.5"),
        ],
    );

    // The same figures export, with Chinese headers.
    let csv_path = format!("/assessment/export.csv?month={}&table=by-grid", m.param());
    let (_, headers, csv) = send(&state, get(&csv_path, &cookie)).await;
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("by-grid.csv")
    );
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        lines[0],
        "网格,应走访户,已走访户,走访覆盖率,到期任务,按期办理,按期办理率,社情民意,按时报送,按时报送率,巡逻时长（小时）"
    );
    assert_eq!(lines[1], "第一网格,3,1,33.3%,4,2,50%,2,1,50%,3.5");
    let xlsx_path = format!(
        "/assessment/export.xlsx?month={}&table=by-worker",
        m.param()
    );
    let (status, _, _) = send(&state, get(&xlsx_path, &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    // In English too.
    let (_, _, en) = send(
        &state,
        get(
            &format!("/assessment?month={}", m.param()),
            &format!("{cookie}; gs_lang=en"),
        ),
    )
    .await;
    assert!(strip_tags(&en).contains("Visit coverage"), "{en}");
}

#[tokio::test]
async fn test_volunteer_hours_by_person_and_unit_and_the_monthly_report() {
    let (_dir, state) = server().await;
    let m = known_month(&state).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(
        &state,
        get(&format!("/volunteers?month={}", m.param()), &cookie),
    )
    .await;
    let chen = row_of(&page, "volunteers", "陈志强");
    assert_eq!(chen["所在单位"], "区税务局");
    assert_eq!(chen["岗位"], "治安巡逻岗");
    assert_eq!(chen["当月服务时长（小时）"], "4");
    assert_eq!(chen["当年参加活动"], "2");
    assert_eq!(
        row_of(&page, "volunteers", "刘洋")["当月服务时长（小时）"],
        "3"
    );
    let (_, _, page) = send(&state, get(&format!("/units?month={}", m.param()), &cookie)).await;
    // The unit's own 4 hours and its volunteer's 2.5 + 1.5.
    let unit = row_of(&page, "units", "区税务局");
    assert_eq!(unit["当月服务时长（小时）"], "8");
    assert_eq!(unit["志愿者数"], "1");
    assert_eq!(unit["联系人"], "刘主任");
    let (_, _, page) = send(
        &state,
        get(&format!("/activities?month={}", m.param()), &cookie),
    )
    .await;
    assert_eq!(
        row_of(&page, "activities", "清理楼道杂物")["服务时长（小时）"],
        "9.5"
    );
    let by_type = rows(&page, "activities-by");
    assert!(
        by_type.contains(&vec!["环境整治".to_string(), "1".into()]),
        "{by_type:?}"
    );

    let (_, _, page) = send(&state, get(&format!("/stats?month={}", m.param()), &cookie)).await;
    let g1 = row_of(&page, "stats", "第一网格");
    for (col, want) in [
        ("活动·合计", "2"),
        ("活动·环境整治", "1"),
        ("活动·共建联席会议", "1"),
        ("活动·志愿服务", "0"),
        ("志愿服务时长（小时）", "11"),
        ("物资入库（次）", "2"),
        ("物资发放（次）", "3"),
        ("领取物资户数", "2"),
        ("到期任务", "4"),
        ("按期办理", "2"),
    ] {
        assert_eq!(g1[col], want, "{col}");
    }
    assert_eq!(
        row_of(&page, "stats-units", "区税务局")["当月服务时长（小时）"],
        "8"
    );
    let rice = row_of(&page, "stats-goods", "大米");
    assert_eq!(
        (
            rice["当月入库"].as_str(),
            rice["当月发放"].as_str(),
            rice["现有库存"].as_str()
        ),
        ("10", "7", "3")
    );
    let csv_path = format!("/stats/export.csv?month={}&table=stats-goods", m.param());
    let (_, _, csv) = send(&state, get(&csv_path, &cookie)).await;
    assert!(csv.contains("大米,袋,第一网格,10,7,2,3"), "{csv}");
}

#[tokio::test]
async fn test_love_supermarket_on_hand_in_out_and_who_received_what() {
    let (_dir, state) = server().await;
    let m = known_month(&state).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(
        &state,
        get(&format!("/supermarket?month={}", m.param()), &cookie),
    )
    .await;
    let rice = row_of(&page, "stock", "大米");
    assert_eq!(
        (rice["当月入库"].as_str(), rice["当月发放"].as_str()),
        ("10", "7")
    );
    assert!(
        rice["现有库存"].starts_with("3") && rice["现有库存"].contains("库存不足"),
        "{rice:?}"
    );
    let oil = row_of(&page, "stock", "食用油");
    assert_eq!(oil["现有库存"], "5");
    let received = rows(&page, "recipients");
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(
        received
            .iter()
            .any(|r| r[1] == "大米" && r[2] == "4 袋" && r[3] == "张二"),
        "{received:?}"
    );
    assert!(
        received
            .iter()
            .any(|r| r[1] == "食用油" && r[2] == "1 桶" && r[3] == "张一"),
        "{received:?}"
    );
    let month = rows(&page, "stock-months");
    assert!(
        month.contains(&vec![
            m.param(),
            "大米".into(),
            "10".into(),
            "7".into(),
            "袋".into()
        ]),
        "{month:?}"
    );
    // The overview names the low item, and only it.
    let (_, _, overview) = send(&state, get("/", &cookie)).await;
    let low = rows(&overview, "low-stock");
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0][0], "大米");
    assert_eq!(low[0][1], "3 袋");
}

#[tokio::test]
async fn test_office_dispatches_a_task_from_a_report_and_verifies_it_when_handled() {
    let (_dir, state) = server().await;
    let m = known_month(&state).await;
    let _ = m;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    // From the report's page: the form is filled in from it, with the report rule's deadline.
    let (_, _, record) = send(&state, get("/records/r1", &cookie)).await;
    assert!(record.contains("action=\"/tasks/new\""), "{record}");
    let (_, _, form) = send(&state, get("/tasks/new?from=r1", &cookie)).await;
    assert_eq!(hidden(&form, "source"), "report");
    assert_eq!(hidden(&form, "source_id"), "r1");
    assert!(form.contains("安全隐患：楼道堆放杂物"), "{form}");
    let deadline = (Utc::now() + Duration::hours(24))
        .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%dT%H:")
        .to_string();
    assert!(
        form.contains(&format!("value=\"{deadline}")),
        "24 hours from now: {form}"
    );

    // Without an assignee it is refused, with the reason.
    let body = |assignee: &str| {
        format!(
            "csrf={csrf}&source=report&source_id=r1&household_id=&grid=g1&title=%E6%B8%85%E7%90%86&assignee={assignee}&assignee_unit_id=&deadline=2030-01-02T18%3A00&description="
        )
    };
    let (status, headers, _) = send(&state, post("/tasks", &cookie, &body(""))).await;
    let (_, page) = follow_error(&state, status, &headers, &cookie).await;
    assert!(page.contains("请选择承办人或承办单位"), "{page}");
    let (status, headers, _) = send(&state, post("/tasks", &cookie, &body("wang"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = headers[header::LOCATION].to_str().unwrap();
    let id = to.strip_prefix("/tasks?dispatched=").unwrap().to_string();
    let doc = state.relay.document(&id).await.unwrap().unwrap();
    let f = gridsync_core::doc::read_root(&doc.doc);
    assert_eq!(
        (
            f["status"].as_str(),
            f["assignee"].as_str(),
            f["source_id"].as_str()
        ),
        (Some("dispatched"), Some("wang"), Some("r1"))
    );
    assert_eq!(
        f["deadline"], "2030-01-02T10:00:00Z",
        "community time to UTC"
    );
    assert_eq!(f["created_by"], "zhao");

    // The board: by deadline, the overdue task (li's) in red, handled ones with the buttons.
    let (_, _, board) = send(&state, get("/tasks", &cookie)).await;
    let t = table(&board, "tasks");
    let ids: Vec<String> = board
        .split("data-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect();
    assert_eq!(
        ids,
        ["t3", "t5", &id, "t1", "t2", "t4"],
        "open work by deadline, then what waits for a check"
    );
    let late: Vec<&str> = board
        .split("<tr class=\"late\" data-id=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(late, ["t3"], "only the overdue one is red");
    assert!(
        t[1].iter().any(|c| c.text.starts_with("逾期")),
        "{:?}",
        t[1]
    );
    assert!(board.contains("action=\"/tasks/t2/act\""));

    // Verify t2 (handled late): its status and an entry by the office; send t4 back.
    let (status, _, _) = send(
        &state,
        post(
            "/tasks/t2/act",
            &cookie,
            &format!("csrf={csrf}&to=verified&back=%2Ftasks"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let f = gridsync_core::doc::read_root(&state.relay.document("t2").await.unwrap().unwrap().doc);
    assert_eq!(f["status"], "verified");
    assert_eq!(
        f["updates"].as_array().unwrap().last().unwrap()["by"],
        "zhao"
    );
    let (status, _, _) = send(
        &state,
        post(
            "/tasks/t4/act",
            &cookie,
            &format!("csrf={csrf}&to=sent_back&note=%E4%B8%8D%E5%AE%8C%E6%95%B4"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let f = gridsync_core::doc::read_root(&state.relay.document("t4").await.unwrap().unwrap().doc);
    assert_eq!(
        (
            f["status"].as_str(),
            f["updates"].as_array().unwrap().last().unwrap()["note"].as_str()
        ),
        (Some("sent_back"), Some("不完整"))
    );
    // A verified task about a household is closed.
    let (status, _, _) = send(
        &state,
        post("/tasks/t1/act", &cookie, &format!("csrf={csrf}&to=closed")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let f = gridsync_core::doc::read_root(&state.relay.document("t1").await.unwrap().unwrap().doc);
    assert_eq!(f["status"], "closed");
    let (_, _, board) = send(&state, get("/tasks", &cookie)).await;
    assert!(
        !board.contains("data-id=\"t1\""),
        "a closed task leaves the board"
    );
    // A move the lifecycle does not allow is refused with the reason.
    let (status, headers, _) = send(
        &state,
        post(
            "/tasks/t3/act",
            &cookie,
            &format!("csrf={csrf}&to=verified&back=%2Ftasks"),
        ),
    )
    .await;
    let (_, page) = follow_error(&state, status, &headers, &cookie).await;
    assert!(page.contains("状态不能从"), "{page}");
}
