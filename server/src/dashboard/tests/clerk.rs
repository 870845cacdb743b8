//! Pages a clerk reads without help: titles that name the record (never an id, no name twice),
//! households, people and devices by name, 无 for nothing, fields in their kind's order and
//! groups, a household's residents and records, the person responsible chosen from the grid's
//! staff, a history in people's words, conflicts a phone settled listed as settled, and a note
//! two people wrote at once shown in both versions to rewrite.

use automerge::ReadDoc;
use gridsync_core::record::Kind;
use serde_json::{Value, json};

use super::pages::{
    Cell, LI, add_note, conflicted_case, heading_and_nav, strip_tags, table, upload, worker,
};
use super::*;

/// wang (王芳) and li (李娜) work in grid g1, zhou (周强) in g9 of another community; each
/// has a phone. Returns wang's and li's phone identities with their real user ids, so the log
/// names them as a phone's upload would.
async fn staff(state: &AppState) -> (Identity, Identity) {
    let mut out = Vec::new();
    for (n, (username, name, grid, actor)) in [
        ("wang", "王芳", "g1", &ACTOR[..]),
        ("li", "李娜", "g1", &LI[..]),
        ("zhou", "周强", "g9", b"zhou-phone-actor".as_slice()),
    ]
    .into_iter()
    .enumerate()
    {
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
        let device = accounts::Device {
            id: format!("phone-{username}"),
            user_id: user.id.clone(),
            name: format!("{name}的手机"),
            created_at: "2026-11-01T00:00:00Z".into(),
            last_seen_at: None,
            revoked_at: None,
        };
        state
            .accounts
            .add_device(device, vec![n as u8; 32], vec![hex::encode(actor)], 5)
            .await
            .unwrap();
        out.push(Identity {
            user_id: user.id,
            ..worker(username, actor, grid)
        });
    }
    (out[0].clone(), out[1].clone())
}

/// A new record as `who`'s phone writes it: the system fields, then `fields`, lists and texts
/// of its kind as Automerge lists and texts, one change.
fn new_doc(who: &Identity, actor: &[u8], kind: Kind, id: &str, fields: Value) -> Automerge {
    let mut all = serde_json::Map::new();
    for (k, v) in [
        ("id", json!(id)),
        ("kind", json!(kind.as_str())),
        ("grid_id", json!(who.grids[0])),
        ("created_by", json!(who.username)),
        ("device_id", json!(who.device_id)),
        ("created_at", json!("2026-11-20T01:00:00Z")),
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
    if let Value::Object(f) = fields {
        all.extend(f);
    }
    let mut doc = Automerge::new().with_actor(ActorId::from(actor));
    let mut tx = doc.transaction();
    gridsync_core::doc::reconcile_root(&mut tx, kind, &serde_json::Map::new(), &all).unwrap();
    tx.commit_with(CommitOptions::default().with_message(who.username.clone()));
    doc
}

async fn create(state: &AppState, who: &Identity, actor: &[u8], kind: Kind, id: &str, f: Value) {
    let doc = new_doc(who, actor, kind, id, f);
    upload(state, who, id, &who.grids[0], &doc, &[]).await;
}

/// The rows of the fields table: each field's label and value, group headings as a row of
/// one cell.
fn fields(page: &str) -> Vec<Vec<Cell>> {
    table(page, "fields")
}

fn value(rows: &[Vec<Cell>], label: &str) -> String {
    rows.iter()
        .find(|r| r.len() == 2 && r[0].text == label)
        .unwrap_or_else(|| panic!("no {label} in {rows:?}"))[1]
        .text
        .clone()
}

#[tokio::test]
async fn test_titles_name_the_record_by_its_household_never_by_an_id_nor_a_name_twice() {
    let (_dir, state) = server().await;
    let (wang, _) = staff(&state).await;
    let address = json!({"estate": "幸福小区", "building": "3", "unit": "2", "door": "301"});
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Household,
        "h-li",
        json!({
            "head_name": "李四", "household_type": "registered", "address": address,
        }),
    )
    .await;
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Household,
        "h-wu",
        json!({
            "head_name": "王五", "household_type": "registered",
        }),
    )
    .await;
    // No subject: the household's head and address say whom it is about.
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Case,
        "0193a1b2-no-subject",
        json!({
            "case_type": "elderly_care", "household_id": "h-li", "status": "open",
        }),
    )
    .await;
    // The subject is the head: named once.
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Case,
        "c-head",
        json!({
            "case_type": "low_income", "household_id": "h-wu", "subject_name": "王五",
            "status": "open", "responsible": "wang",
        }),
    )
    .await;
    // A subject outside any registered household.
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Case,
        "0193a1b2-subject",
        json!({
            "case_type": "temporary_relief", "subject_name": "赵七", "status": "open",
        }),
    )
    .await;
    let (cookie, _) = sign_in(&state, "zhao").await;

    let expected = [
        ("0193a1b2-no-subject", "养老照护 · 李四 幸福小区-3-2-301"),
        ("c-head", "低保 · 王五"),
        ("0193a1b2-subject", "临时救助 · 赵七"),
    ];
    let (_, _, list) = send(&state, get("/records?kind=case", &cookie)).await;
    let rows = table(&list, "records");
    for (id, title) in expected {
        let (_, _, page) = send(&state, get(&format!("/records/{id}"), &cookie)).await;
        let (h1, _) = heading_and_nav(&page);
        assert_eq!(h1, title, "the page of {id}");
        assert!(
            rows.iter().any(|r| r[0].text == title),
            "{title} not in the list: {rows:?}"
        );
    }
    // The export names them the same way.
    let (_, _, csv) = send(&state, get("/records/export.csv?kind=case", &cookie)).await;
    for (id, title) in expected {
        let line = csv.lines().find(|l| l.starts_with(id)).unwrap();
        assert!(line.contains(&format!(",{title},")), "{line}");
        assert!(!line.contains("王五 · 王五"), "{line}");
    }
    // A visit is its household's, by type and day.
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Visit,
        "v1",
        json!({
            "household_id": "h-li", "visit_type": "routine", "outcome": "met",
            "started_at": "2026-11-20T01:00:00Z",
        }),
    )
    .await;
    let (_, _, page) = send(&state, get("/records/v1", &cookie)).await;
    let (h1, _) = heading_and_nav(&page);
    assert_eq!(h1, "李四 幸福小区-3-2-301 · 常规走访 · 2026-11-20");
}

#[tokio::test]
async fn test_record_page_shows_fields_in_their_kinds_order_and_groups_with_none_for_nothing() {
    let (_dir, state) = server().await;
    let (wang, _) = staff(&state).await;
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Household,
        "h1",
        json!({
            "head_name": "李四", "household_type": "registered",
        }),
    )
    .await;
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Case,
        "c1",
        json!({
            "case_type": "elderly_care", "household_id": "h1", "status": "open",
            "responsible": "wang", "plan": "每周上门一次",
        }),
    )
    .await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/records/c1", &cookie)).await;
    let rows = fields(&page);
    let labels: Vec<&str> = rows.iter().map(|r| r[0].text.as_str()).collect();
    assert_eq!(
        labels,
        [
            "基本信息",
            "个案类型",
            "户",
            "帮扶对象",
            "来源",
            "致困原因",
            "负责人",
            "帮扶计划",
            "下次复核",
            "状态",
            "备注",
            "明细",
            "帮扶需求",
            "帮扶措施",
            "系统信息",
            "创建人",
            "创建设备",
            "创建时间",
            "更新时间",
            "更新人",
        ],
        "the case's own fields in its spec's order, then its lists, then the system's"
    );
    // Nothing reads 无, never [] or a blank.
    for label in [
        "帮扶对象",
        "致困原因",
        "帮扶措施",
        "帮扶需求",
        "备注",
        "更新人",
    ] {
        assert_eq!(value(&rows, label), "无", "{label}");
    }
    assert!(!strip_tags(&page).contains("[]"));
    // The household, the people and the device by name, linked to their pages.
    assert_eq!(value(&rows, "户"), "李四");
    assert!(page.contains("href=\"/records/h1\">李四</a>"), "{page}");
    assert_eq!(value(&rows, "负责人"), "王芳");
    assert!(page.contains("href=\"/records?worker=wang\""), "{page}");
    assert_eq!(value(&rows, "创建设备"), "王芳的手机（王芳）");
    assert!(!strip_tags(&page).contains("phone-wang"));

    let (_, _, en) = send(&state, get("/records/c1", &format!("{cookie}; gs_lang=en"))).await;
    let rows = fields(&en);
    assert_eq!(value(&rows, "Cause"), "none");
    assert_eq!(value(&rows, "Created on device"), "王芳的手机 (王芳)");
}

#[tokio::test]
async fn test_household_page_lists_its_residents_visits_cases_reports_and_tasks() {
    let (_dir, state) = server().await;
    let (wang, _) = staff(&state).await;
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Household,
        "h1",
        json!({
            "head_name": "李四", "household_type": "registered",
            "residents": [
                {"name": "李四", "relation": "户主", "phone": "13800000000"},
                {"name": "李小明", "relation": "子"},
            ],
        }),
    )
    .await;
    // The residents' ID numbers are in the household's private part, as a phone splits them.
    create(
        &state,
        &wang,
        ACTOR,
        Kind::HouseholdPrivate,
        "h1~private",
        json!({
            "household_id": "h1",
            "residents": [{"name": "李四", "id_number": "110101195001011234"}, {"name": "李小明"}],
        }),
    )
    .await;
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Household,
        "h2",
        json!({
            "head_name": "赵六", "household_type": "registered",
        }),
    )
    .await;
    for (id, household) in [("v1", "h1"), ("v2", "h2")] {
        create(
            &state,
            &wang,
            ACTOR,
            Kind::Visit,
            id,
            json!({
                "household_id": household, "visit_type": "routine", "outcome": "met",
                "started_at": "2026-11-20T01:00:00Z", "observations": format!("{id} 的走访"),
            }),
        )
        .await;
    }
    create(&state, &wang, ACTOR, Kind::Case, "c1", json!({
        "case_type": "low_income", "household_id": "h1", "subject_name": "李小明", "status": "open",
    }))
    .await;
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Report,
        "r1",
        json!({
            "category": "safety_hazard", "urgency": "normal", "place": "3栋",
            "description": "李四家门前电线老化", "discovered_at": "2026-11-20T01:00:00Z",
        }),
    )
    .await;
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Task,
        "t1",
        json!({
            "title": "更换电线", "source": "report", "source_id": "r1", "household_id": "h1",
            "assignee": "wang", "deadline": "2026-11-22T01:00:00Z", "status": "dispatched",
        }),
    )
    .await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/records/h1", &cookie)).await;

    let residents = table(&page, "residents");
    let head: Vec<&str> = residents[0].iter().map(|c| c.text.as_str()).collect();
    assert_eq!(head, ["姓名", "身份证号", "与户主关系", "联系电话"]);
    let li: Vec<&str> = residents[1].iter().map(|c| c.text.as_str()).collect();
    assert_eq!(li, ["李四", "1101**********1234", "户主", "13800000000"]);
    let son: Vec<&str> = residents[2].iter().map(|c| c.text.as_str()).collect();
    assert_eq!(son, ["李小明", "无", "子", "无"]);
    assert!(
        !page.contains("110101195001011234"),
        "the ID number is masked"
    );

    let listed = |kind: &str| -> Vec<String> {
        let at = page
            .find(&format!("id=\"household-{kind}\""))
            .unwrap_or_else(|| panic!("no {kind} section"));
        let section = &page[at..];
        let section = &section[..section.find("</section>").unwrap()];
        section
            .split("<tr data-id=\"")
            .skip(1)
            .map(|r| r[..r.find('"').unwrap()].to_string())
            .collect()
    };
    assert_eq!(listed("visit"), ["v1"], "not the other household's visit");
    assert_eq!(listed("case"), ["c1"]);
    assert_eq!(
        listed("report"),
        ["r1"],
        "the report a task for it came from"
    );
    assert_eq!(listed("task"), ["t1"]);
    let text = strip_tags(&page);
    assert!(
        text.contains("低保 · 李小明 · 李四") && text.contains("更换电线"),
        "{text}"
    );
    // A household with none says so.
    let (_, _, other) = send(&state, get("/records/h2", &cookie)).await;
    let at = other.find("id=\"household-case\"").unwrap();
    let section = &other[at..];
    let section = strip_tags(&section[..section.find("</section>").unwrap()]);
    assert!(section.ends_with("帮扶个案 (0)无"), "{section}");
}

#[tokio::test]
async fn test_the_person_responsible_is_chosen_from_the_grids_staff() {
    let (_dir, state) = server().await;
    let (wang, _) = staff(&state).await;
    create(
        &state,
        &wang,
        ACTOR,
        Kind::Case,
        "c1",
        json!({
            "case_type": "low_income", "subject_name": "张三", "status": "open",
        }),
    )
    .await;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/records/c1", &cookie)).await;
    let form = &page[page.find("id=\"act-assign\"").unwrap()..];
    let form = &form[..form.find("</form>").unwrap()];
    assert!(!form.contains("<input name=\"responsible\""), "{form}");
    let options: Vec<&str> = form
        .split("<option value=\"")
        .skip(1)
        .map(|o| &o[..o.find('"').unwrap()])
        .collect();
    // The grid's workers, then the office; not a worker of another community's grid, not a
    // volunteer.
    assert_eq!(options, ["", "li", "wang", "zhao"], "{form}");
    assert!(
        form.contains("王芳 (wang)") && form.contains("label=\"网格员\""),
        "{form}"
    );

    // Someone else is refused, with the reason, and nothing is written.
    let before = state
        .relay
        .queries()
        .change_sources("c1")
        .await
        .unwrap()
        .len();
    for who in ["zhou", "vol", "nobody"] {
        let post_it = format!("csrf={csrf}&op=assign&responsible={who}");
        let (status, headers, _) = send(&state, post("/records/c1/act", &cookie, &post_it)).await;
        let (_, page) = super::follow_error(&state, status, &headers, &cookie).await;
        assert!(
            strip_tags(&page).contains("负责人须是本网格的网格员或社区办公室工作人员"),
            "{who}: {page}"
        );
    }
    assert_eq!(
        state
            .relay
            .queries()
            .change_sources("c1")
            .await
            .unwrap()
            .len(),
        before
    );
    let post_it = format!("csrf={csrf}&op=assign&responsible=li");
    let (status, _, _) = send(&state, post("/records/c1/act", &cookie, &post_it)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = send(&state, get("/records/c1", &cookie)).await;
    assert_eq!(value(&fields(&page), "负责人"), "李娜");
    assert!(page.contains("<option value=\"li\" selected>"), "{page}");
}

#[tokio::test]
async fn test_history_says_who_changed_what_on_which_device_in_peoples_words() {
    let (_dir, state) = server().await;
    let (wang, li) = staff(&state).await;
    let mut doc = new_doc(
        &wang,
        ACTOR,
        Kind::Household,
        "h1",
        json!({
            "head_name": "李四", "household_type": "registered",
            "address": {"building": "3", "door": "301"},
        }),
    );
    upload(&state, &wang, "h1", "g1", &doc, &[]).await;
    let base = doc.get_heads();
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    let door = match doc.get(ROOT, "address").unwrap() {
        Some((_, id)) => id,
        None => panic!("no address"),
    };
    let mut tx = doc.transaction();
    tx.put(&door, "door", "302").unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    let mut tx = theirs.transaction();
    tx.put(ROOT, "risk_level", "high").unwrap();
    tx.commit_with(CommitOptions::default().with_message("li"));
    upload(&state, &wang, "h1", "g1", &doc, &base).await;
    upload(&state, &li, "h1", "g1", &theirs, &base).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/records/h1", &cookie)).await;
    let text = strip_tags(&page);
    assert!(!text.contains("Automerge"), "{text}");
    let hint = &page[page.find("修改历史</h2>").unwrap()..];
    assert!(
        strip_tags(&hint[..hint.find("</p>").unwrap()])
            .contains("修改历史谁、何时、在哪台设备上改了哪些内容"),
        "{text}"
    );
    // A nested record reads part by part in its spec's order, by label.
    assert_eq!(value(&fields(&page), "地址"), "楼栋：3 · 门牌号：302");
    let rows = table(&page, "history");
    let head: Vec<&str> = rows[0].iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        head,
        ["设备时间", "服务器接收", "修改人", "设备", "修改的字段"]
    );
    let change = |who: &str| {
        rows.iter()
            .find(|r| r.len() == 5 && r[2].text == who)
            .unwrap_or_else(|| panic!("no change by {who}: {rows:?}"))
    };
    let li_row = change("李娜");
    assert_eq!(li_row[3].text, "李娜的手机（李娜）");
    assert_eq!(li_row[4].text, "风险等级：高");
    assert!(li_row[0].text.contains("同时修改"), "{:?}", li_row[0].text);
    let wang_rows: Vec<&Vec<Cell>> = rows
        .iter()
        .filter(|r| r.len() == 5 && r[2].text == "王芳")
        .collect();
    assert!(
        wang_rows
            .iter()
            .any(|r| r[4].text == "地址 · 门牌号：301 → 302"),
        "{wang_rows:?}"
    );
    assert!(wang_rows.iter().any(|r| r[4].text == "创建记录"));
}

#[tokio::test]
async fn test_a_conflict_a_phone_settles_leaves_the_queue_and_is_listed_as_settled() {
    let (_dir, state) = server().await;
    let (wang, li) = staff(&state).await;
    conflicted_case(&state, "c1").await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, queue) = send(&state, get("/review", &cookie)).await;
    assert!(queue.contains("data-id=\"c1\""), "awaiting review");

    // wang's phone receives li's change and sets the status again: one value, one head.
    let mut doc = state.relay.document("c1").await.unwrap().unwrap().doc;
    let heads = doc.get_heads();
    doc.set_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    tx.put(ROOT, "status", "in_progress").unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    upload(&state, &wang, "c1", "g1", &doc, &heads).await;
    let _ = li;

    let (_, _, queue) = send(&state, get("/review", &cookie)).await;
    let waiting = &queue[..queue.find("id=\"settled\"").unwrap_or(queue.len())];
    assert!(
        !waiting.contains("data-id=\"c1\""),
        "no longer awaiting: {queue}"
    );
    assert!(strip_tags(waiting).contains("没有待审核的记录"), "{queue}");
    let settled = table(&queue, "settled");
    let head: Vec<&str> = settled[0].iter().map(|c| c.text.as_str()).collect();
    assert_eq!(head, ["标题", "类别", "网格", "解决时间", "解决人", "标记"]);
    assert_eq!(settled.len(), 2, "{settled:?}");
    assert_eq!(settled[1][0].text, "低保 · 张三");
    assert_eq!(settled[1][4].text, "王芳");
    assert_eq!(settled[1][5].text, "已解决");
    assert!(strip_tags(&queue).contains("最近已解决"));
    // Its review page says so, and the list no longer flags it.
    let (_, _, page) = send(&state, get("/review/c1", &cookie)).await;
    let note = &page[page.find("id=\"review-settled\"").unwrap()..];
    assert!(strip_tags(&note[..note.find("</p>").unwrap()]).contains("已解决"));
    let (_, _, list) = send(&state, get("/records?kind=case", &cookie)).await;
    assert!(!strip_tags(&list).contains("并行编辑"), "{list}");
}

#[tokio::test]
async fn test_a_note_two_people_wrote_at_once_shows_both_versions_to_rewrite() {
    let (_dir, state) = server().await;
    let (wang, li) = staff(&state).await;
    let mut doc = new_doc(
        &wang,
        ACTOR,
        Kind::Case,
        "c1",
        json!({
            "case_type": "low_income", "subject_name": "张三", "status": "open",
        }),
    );
    upload(&state, &wang, "c1", "g1", &doc, &[]).await;
    let base = doc.get_heads();
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    add_note(&mut doc, "wang", "申请人外出务工", &[]);
    add_note(&mut theirs, "li", "已联系低保专干", &[]);
    upload(&state, &wang, "c1", "g1", &doc, &base).await;
    upload(&state, &li, "c1", "g1", &theirs, &base).await;
    let merged = gridsync_core::doc::read_root(
        &state.relay.document("c1").await.unwrap().unwrap().doc,
    )["notes"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(merged.chars().count(), 14, "run together: {merged}");

    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/review/c1", &cookie)).await;
    let at = page
        .find("id=\"text-notes\"")
        .unwrap_or_else(|| panic!("no text conflict shown: {page}"));
    let section = &page[at..];
    let section = &section[..section.find("</section>").unwrap()];
    let text = strip_tags(section);
    assert!(text.contains("同一段文字被两人同时修改：备注"), "{text}");
    let mut versions: Vec<String> = section
        .split("<figure class=\"version\">")
        .skip(1)
        .map(|v| strip_tags(&v[..v.find("</figure>").unwrap()]))
        .collect();
    versions.sort();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        versions[0].starts_with("李娜 · ") && versions[0].ends_with("已联系低保专干"),
        "{versions:?}"
    );
    assert!(
        versions[1].starts_with("王芳 · ") && versions[1].ends_with("申请人外出务工"),
        "{versions:?}"
    );
    assert!(
        section.contains(&format!(">{merged}</textarea>")),
        "{section}"
    );

    // The clerk rewrites it: the record holds the new text, the text and the review are settled.
    let rewritten = "申请人外出务工；已联系低保专干。";
    let form = format!(
        "csrf={csrf}&field=notes&text={}",
        super::super::layout::encode(&format!("{rewritten}\r\n"))
    );
    let (status, _, _) = send(&state, post("/review/c1/rewrite", &cookie, &form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let stored = state.relay.document("c1").await.unwrap().unwrap().doc;
    assert_eq!(
        gridsync_core::doc::read_root(&stored)["notes"],
        format!("{rewritten}\n")
    );
    let (_, _, page) = send(&state, get("/review/c1", &cookie)).await;
    assert!(!page.contains("id=\"text-notes\""), "{page}");
    let (_, _, queue) = send(&state, get("/review", &cookie)).await;
    let settled = table(&queue, "settled");
    assert_eq!(
        settled[1][4].text, "zhao-名",
        "settled by the clerk: {settled:?}"
    );
    // Only text fields are rewritten this way.
    let form = format!("csrf={csrf}&field=status&text=closed");
    let (status, headers, _) = send(&state, post("/review/c1/rewrite", &cookie, &form)).await;
    let (_, page) = super::follow_error(&state, status, &headers, &cookie).await;
    assert!(strip_tags(&page).contains("请求无效"), "{page}");
}
