//! What office staff see on the pages: tables whose headers sit over their numbers, report
//! statuses and deadlines that say what happened, review pages that name the record, show the
//! merged result and offer an enum field's values by label, and consistent wording.

use automerge::{ChangeHash, ReadDoc};
use chrono::{DateTime, Duration, Utc};

use super::*;

pub(super) const LI: &[u8; 16] = b"li-phone-actor-1";

pub(super) fn worker(username: &str, actor: &[u8], grid: &str) -> Identity {
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

/// Uploads the changes of `doc` after `since`, as `who`'s phone would.
pub(super) async fn upload(
    state: &AppState,
    who: &Identity,
    id: &str,
    grid: &str,
    doc: &Automerge,
    since: &[ChangeHash],
) {
    let ups = doc
        .get_changes(since)
        .iter()
        .map(|c| UpChange {
            doc_id: id.into(),
            grid: grid.into(),
            bytes: c.raw_bytes().to_vec(),
        })
        .collect();
    let (rejected, _) = state.relay.accept(who, ups).await.unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
}

/// The workers' accounts, so that pages can show their names.
pub(super) async fn name_workers(state: &AppState) {
    for (username, name) in [("wang", "王芳"), ("li", "李娜")] {
        state
            .accounts
            .add_user(NewUser {
                username: username.into(),
                display_name: name.into(),
                role: Role::GridWorker,
                password_hash: accounts::hash_password("pw-2026").unwrap(),
            })
            .await
            .unwrap();
    }
}

/// A case created by wang with notes (Automerge text), not uploaded yet.
pub(super) fn case_doc(id: &str, status: &str) -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    for (k, v) in [
        ("id", id),
        ("kind", "case"),
        ("grid_id", "g1"),
        ("case_type", "low_income"),
        ("subject_name", "张三"),
        ("status", status),
        ("created_by", "wang"),
    ] {
        tx.put(ROOT, k, v).unwrap();
    }
    tx.put_object(ROOT, "actions", automerge::ObjType::List)
        .unwrap();
    tx.put_object(ROOT, "notes", automerge::ObjType::Text)
        .unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    doc
}

/// Puts `fields` on `doc` as one change by `author`.
pub(super) fn edit(doc: &mut Automerge, author: &str, fields: &[(&str, &str)]) {
    let mut tx = doc.transaction();
    for (k, v) in fields {
        tx.put(ROOT, *k, *v).unwrap();
    }
    tx.commit_with(CommitOptions::default().with_message(author));
}

/// Appends to the case's notes as one change by `author`.
pub(super) fn add_note(doc: &mut Automerge, author: &str, text: &str, also: &[(&str, &str)]) {
    let notes = match doc.get(ROOT, "notes").unwrap() {
        Some((_, id)) => id,
        None => panic!("no notes"),
    };
    let at = doc.text(&notes).unwrap().chars().count();
    let mut tx = doc.transaction();
    tx.splice_text(&notes, at, 0, text).unwrap();
    for (k, v) in also {
        tx.put(ROOT, *k, *v).unwrap();
    }
    tx.commit_with(CommitOptions::default().with_message(author));
}

/// Appends an action to the case's actions as one change by `author`.
fn add_action(doc: &mut Automerge, author: &str, action: &[(&str, &str)]) {
    let actions = match doc.get(ROOT, "actions").unwrap() {
        Some((_, id)) => id,
        None => panic!("no actions"),
    };
    let at = doc.length(&actions);
    let mut tx = doc.transaction();
    let item = tx
        .insert_object(&actions, at, automerge::ObjType::Map)
        .unwrap();
    for (k, v) in action {
        tx.put(&item, *k, *v).unwrap();
    }
    tx.commit_with(CommitOptions::default().with_message(author));
}

/// The declarations of the stylesheet's rule for exactly this selector list.
fn css_rule(css: &str, selector: &str) -> String {
    css.split('}')
        .find_map(|block| {
            let (selectors, body) = block.split_once('{')?;
            let selectors = selectors.rsplit("*/").next()?.trim();
            (selectors == selector).then(|| body.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no CSS rule for {selector}"))
}

/// The values of the options of the first `<select>` after `from` in a page.
pub(super) fn options(page: &str, from: &str) -> Vec<String> {
    let select = &page[page.find(from).unwrap()..];
    let select = &select[select.find("<select").unwrap()..];
    let select = &select[..select.find("</select>").unwrap()];
    select
        .split("<option value=\"")
        .skip(1)
        .map(|o| o[..o.find('"').unwrap()].to_string())
        .collect()
}

/// A case whose status wang and li changed differently while offline: a field conflict.
pub(super) async fn conflicted_case(state: &AppState, id: &str) {
    let (wang, li) = (worker("wang", ACTOR, "g1"), worker("li", LI, "g1"));
    let mut doc = case_doc(id, "open");
    upload(state, &wang, id, "g1", &doc, &[]).await;
    let base = doc.get_heads();
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    edit(&mut doc, "wang", &[("status", "assessing")]);
    edit(&mut theirs, "li", &[("status", "suspended")]);
    upload(state, &wang, id, "g1", &doc, &base).await;
    upload(state, &li, id, "g1", &theirs, &base).await;
}

/// A case whose notes wang and li both added to while offline (and wang also wrote the plan):
/// a parallel edit that merged by itself.
async fn parallel_case(state: &AppState, id: &str) {
    let (wang, li) = (worker("wang", ACTOR, "g1"), worker("li", LI, "g1"));
    let mut doc = case_doc(id, "open");
    upload(state, &wang, id, "g1", &doc, &[]).await;
    let base = doc.get_heads();
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    add_note(
        &mut doc,
        "wang",
        "王：已上门核实收入。",
        &[("plan", "申请低保")],
    );
    add_note(&mut theirs, "li", "李：电话联系了家属。", &[]);
    upload(state, &wang, id, "g1", &doc, &base).await;
    upload(state, &li, id, "g1", &theirs, &base).await;
}

/// An urgent report in g1 as wang's phone sends it (status as the phone last set it).
async fn report(
    state: &AppState,
    id: &str,
    discovered: DateTime<Utc>,
    phoned: Option<DateTime<Utc>>,
    status: &str,
) {
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    let discovered = discovered.to_rfc3339();
    let mut fields = vec![
        ("id", id.to_string()),
        ("kind", "report".into()),
        ("grid_id", "g1".into()),
        ("category", "safety_hazard".into()),
        ("urgency", "critical".into()),
        ("place", "3栋楼道".into()),
        ("description", "楼道堆放杂物".into()),
        ("discovered_at", discovered),
        ("status", status.into()),
        ("created_by", "wang".into()),
    ];
    if let Some(p) = phoned {
        fields.push(("phoned_in_at", p.to_rfc3339()));
    }
    for (k, v) in fields {
        tx.put(ROOT, k, v).unwrap();
    }
    tx.put_object(ROOT, "follow_ups", automerge::ObjType::List)
        .unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    upload(state, &worker("wang", ACTOR, "g1"), id, "g1", &doc, &[]).await;
}

/// A cell as the browser shows it: its tag (`th`/`td`), class and text.
#[derive(Debug)]
pub(super) struct Cell {
    pub(super) tag: String,
    pub(super) class: String,
    pub(super) text: String,
}

pub(super) fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in html.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// The rows of the table with this id, each as its cells.
pub(super) fn table(page: &str, id: &str) -> Vec<Vec<Cell>> {
    let at = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id}"));
    let html = &page[at..];
    let html = &html[..html.find("</table>").unwrap()];
    let mut rows = Vec::new();
    for row in html.split("<tr").skip(1) {
        let mut cells = Vec::new();
        let mut rest = row;
        while let Some(start) = ["<th", "<td"]
            .iter()
            .filter_map(|t| {
                rest.match_indices(t)
                    .find(|(i, _)| matches!(rest.as_bytes().get(i + 3), Some(b' ' | b'>')))
                    .map(|(i, _)| i)
            })
            .min()
        {
            let tag = rest[start + 1..start + 3].to_string();
            let open_end = start + rest[start..].find('>').unwrap();
            let attrs = &rest[start..open_end];
            let class = attrs
                .split("class=\"")
                .nth(1)
                .map(|c| c[..c.find('"').unwrap()].to_string())
                .unwrap_or_default();
            let close = format!("</{tag}>");
            let end = open_end + rest[open_end..].find(&close).unwrap();
            cells.push(Cell {
                tag,
                class,
                text: strip_tags(&rest[open_end + 1..end]),
            });
            rest = &rest[end + close.len()..];
        }
        rows.push(cells);
    }
    rows
}

fn has_class(cell: &Cell, class: &str) -> bool {
    cell.class.split_whitespace().any(|c| c == class)
}

/// The `<h1>` of a page and the highlighted navigation entry.
pub(super) fn heading_and_nav(page: &str) -> (String, String) {
    let h1 = &page[page.find("<h1>").unwrap() + 4..];
    let h1 = strip_tags(&h1[..h1.find("</h1>").unwrap()]);
    let nav = &page[page.find("class=\"active\">").unwrap() + 15..];
    let nav = strip_tags(&nav[..nav.find("</a>").unwrap()]);
    (h1, nav)
}

#[tokio::test]
async fn test_overview_headers_of_numbers_line_up_with_their_numbers() {
    let (_dir, state) = server().await;
    case(&state, "c1", "g1", "assessing").await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/", &cookie)).await;
    for id in ["overview", "cases-by"] {
        let rows = table(&page, id);
        let (head, body) = rows.split_first().unwrap();
        assert!(!body.is_empty(), "#{id} has rows");
        for row in body {
            assert_eq!(row.len(), head.len(), "#{id}: one header per column");
            for (h, c) in head.iter().zip(row) {
                assert_eq!(
                    has_class(h, "num"),
                    has_class(c, "num"),
                    "#{id}: header {:?} is aligned differently from its cells ({:?})",
                    h.text,
                    c.text
                );
            }
        }
    }
    // Counts of nothing read 0 in every overview table, never a blank cell.
    for id in ["overview", "cases-by", "incidents-by"] {
        for row in table(&page, id)
            .iter()
            .skip(usize::from(id != "incidents-by"))
        {
            for c in row.iter().filter(|c| c.tag == "td") {
                assert!(c.text.parse::<u64>().is_ok(), "#{id}: cell {:?}", c.text);
            }
        }
    }
    let matrix = table(&page, "cases-by");
    let assessing = matrix[0].iter().position(|h| h.text == "评估中").unwrap();
    let low_income = matrix.iter().find(|r| r[0].text == "低保").unwrap();
    assert_eq!(low_income[assessing].text, "1");
}

#[tokio::test]
async fn test_report_held_by_the_relay_reads_received_and_phoned_in_on_time_is_not_late() {
    let (_dir, state) = server().await;
    let now = Utc::now();
    let discovered = now - Duration::hours(3);
    // Phoned in 5 minutes after discovery (critical: 20 minutes), its data synced only now,
    // and the phone still calls it a draft.
    report(
        &state,
        "r-phoned",
        discovered,
        Some(discovered + Duration::minutes(5)),
        "draft",
    )
    .await;
    // Never phoned in: reported when its data reached the relay, hours late.
    report(&state, "r-late", discovered, None, "queued").await;
    let (cookie, _) = sign_in(&state, "zhao").await;

    let (_, _, board) = send(&state, get("/reports", &cookie)).await;
    let row = |id: &str| {
        let at = board.find(&format!("data-id=\"{id}\"")).unwrap();
        let tr = &board[board[..at].rfind("<tr").unwrap()..];
        tr[..tr.find("</tr>").unwrap()].to_string()
    };
    let phoned = row("r-phoned");
    assert!(!phoned.contains("class=\"late\""), "no red row: {phoned}");
    let phoned = strip_tags(&phoned);
    assert!(phoned.contains("按时报送"), "{phoned}");
    assert!(phoned.contains("过时限待确认"), "{phoned}");
    assert!(
        !phoned.contains("已超时") && !phoned.contains("超时报送"),
        "{phoned}"
    );
    assert!(
        phoned.contains("已接收") && !phoned.contains("草稿"),
        "{phoned}"
    );
    let late = row("r-late");
    assert!(late.contains("class=\"late\""), "{late}");
    let late = strip_tags(&late);
    assert!(
        late.contains("超时报送") && late.contains("已接收"),
        "{late}"
    );

    let (_, _, overview) = send(&state, get("/", &cookie)).await;
    let grid = table(&overview, "overview");
    let col = |name: &str| grid[0].iter().position(|h| h.text == name).unwrap();
    let g1 = grid.iter().find(|r| r[0].text == "第一网格").unwrap();
    assert_eq!(g1[col("待处理社情民意")].text, "2");
    assert_eq!(g1[col("超时报送")].text, "1", "only the one reported late");
    assert_eq!(g1[col("过时限待确认")].text, "2");
    let urgent = table(&overview, "reports");
    assert!(
        urgent
            .iter()
            .flatten()
            .all(|c| c.text != "草稿" && !c.text.contains("已超时")),
        "{urgent:?}"
    );

    // The list and its status filter speak of received reports too.
    let (_, _, list) = send(&state, get("/records?kind=report&status=received", &cookie)).await;
    assert!(list.contains("2 条"), "{list}");
    assert!(!strip_tags(&list).contains("草稿"));
    let (_, _, record) = send(&state, get("/records/r-phoned", &cookie)).await;
    assert!(record.contains("id=\"record-status\">已接收<"), "{record}");
}

#[tokio::test]
async fn test_review_of_a_status_conflict_offers_statuses_by_label_and_explains_a_wrong_value() {
    let (_dir, state) = server().await;
    name_workers(&state).await;
    conflicted_case(&state, "c1").await;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/review/c1", &cookie)).await;
    let text = strip_tags(&page);
    assert!(text.contains("字段：状态"), "{text}");
    assert!(!text.contains("状态 status"), "no raw field key: {text}");
    assert!(text.contains("王芳") && text.contains("李娜"), "{text}");
    // A new value for an enum field is a choice among its values, by label.
    let form = &page[page.find("class=\"act new-value\"").unwrap()..];
    let form = &form[..form.find("</form>").unwrap()];
    assert!(form.contains("<select name=\"value\""), "{form}");
    assert!(
        form.contains("<option value=\"in_progress\">帮扶中</option>"),
        "{form}"
    );
    assert!(!form.contains("<input name=\"value\""), "{form}");

    // A value that is none of them: refused with the field and its choices by label, on the
    // review page the browser is sent back to (reloading it posts nothing).
    let wrong = format!("csrf={csrf}&field=status&value=%E5%B8%AE%E6%89%B6"); // 帮扶
    let (status, headers, _) = send(&state, post("/review/c1/resolve", &cookie, &wrong)).await;
    let (location, page) = follow_error(&state, status, &headers, &cookie).await;
    assert_eq!(location, "/review/c1");
    let text = strip_tags(&page);
    assert!(
        text.contains("「状态」不能填「帮扶」，只能选：评估中、帮扶中、已办结、已转介、已暂停"),
        "{text}"
    );
    assert!(!text.contains("unknown variant"), "{text}");
    let (_, _, again) = send(&state, get(&location, &cookie)).await;
    assert!(!again.contains("不能填"), "the reason is shown once");

    // In English, the same in English, listed with commas.
    let en = format!("{cookie}; gs_lang=en");
    let (status, headers, _) = send(&state, post("/review/c1/resolve", &en, &wrong)).await;
    let (_, page) = follow_error(&state, status, &headers, &en).await;
    assert!(
        strip_tags(&page).contains(
            "“帮扶” is not a valid Status; choose one of: Assessing, In progress, Closed, Referred, Suspended"
        ),
        "{page}"
    );

    // The label the page shows is understood, and settles the conflict.
    let label = format!("csrf={csrf}&field=status&value=%E5%B8%AE%E6%89%B6%E4%B8%AD"); // 帮扶中
    let (status, headers, _) = send(&state, post("/review/c1/resolve", &cookie, &label)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers.get(header::SET_COOKIE).is_none());
    let doc = state.relay.document("c1").await.unwrap().unwrap().doc;
    assert_eq!(gridsync_core::doc::read_root(&doc)["status"], "in_progress");
    assert!(gridsync_core::doc::conflicts(&doc).is_empty());
}

#[tokio::test]
async fn test_review_page_names_the_record_and_shows_the_merged_result_before_marking_it() {
    let (_dir, state) = server().await;
    name_workers(&state).await;
    parallel_case(&state, "c1").await;
    let (cookie, _) = sign_in(&state, "zhao").await;

    // The queue shows people by name.
    let (_, _, queue) = send(&state, get("/review", &cookie)).await;
    let rows = table(&queue, "records");
    let worker = rows[0]
        .iter()
        .position(|h| h.text == "网格员/负责人")
        .unwrap();
    assert_eq!(rows[1][worker].text, "王芳");

    let (_, _, page) = send(&state, get("/review/c1", &cookie)).await;
    let (h1, nav) = heading_and_nav(&page);
    assert_eq!(nav, "审核队列");
    assert!(
        h1.starts_with("审核：") && h1.contains("低保") && h1.contains("张三"),
        "{h1}"
    );
    // The merged notes of both workers and wang's plan, above the button that accepts them.
    let merged = &page[page.find("id=\"merged\"").unwrap()..];
    assert!(
        merged.find("mark-reviewed").unwrap() > merged.find("</table>").unwrap(),
        "the merged values come before the button"
    );
    let merged = table(&page, "merged");
    let value = |field: &str| {
        merged
            .iter()
            .find(|r| r[0].text == field)
            .unwrap_or_else(|| panic!("{field} not shown: {merged:?}"))[1]
            .text
            .clone()
    };
    let notes = value("备注");
    assert!(
        notes.contains("王：已上门核实收入。") && notes.contains("李：电话联系了家属。"),
        "{notes}"
    );
    assert_eq!(value("帮扶计划"), "申请低保");
    let text = strip_tags(&page);
    assert!(text.contains("王芳：备注、帮扶计划"), "{text}");

    let (_, _, en) = send(&state, get("/review/c1", &format!("{cookie}; gs_lang=en"))).await;
    let text = strip_tags(&en);
    assert!(text.contains("王芳: Notes, Plan"), "{text}");
    assert!(!text.contains('、'), "{text}");
}

#[tokio::test]
async fn test_every_page_is_headed_as_its_navigation_entry_with_full_width_colons() {
    let (_dir, state) = server().await;
    name_workers(&state).await;
    parallel_case(&state, "c1").await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    for lang in ["zh", "en"] {
        let cookie = format!("{cookie}; gs_lang={lang}");
        for path in [
            "/",
            "/records",
            "/review",
            "/reports",
            "/stats",
            "/tasks",
            "/tasks/new",
            "/units",
            "/volunteers",
            "/activities",
            "/supermarket",
            "/assessment",
        ] {
            let (_, _, page) = send(&state, get(path, &cookie)).await;
            let (h1, nav) = heading_and_nav(&page);
            assert!(
                h1.starts_with(&nav),
                "{lang} {path}: heading {h1:?}, menu {nav:?}"
            );
        }
    }
    for path in [
        "/",
        "/reports",
        "/records/c1",
        "/review/c1",
        "/tasks",
        "/tasks/new",
        "/units",
        "/supermarket",
        "/assessment",
        "/stats",
    ] {
        let (_, _, page) = send(&state, get(path, &cookie)).await;
        let main = strip_tags(&page[page.find("<main>").unwrap()..]);
        let half: Vec<&str> = main
            .lines()
            .filter(|l| l.contains(": ") || l.trim_end().ends_with(':'))
            .collect();
        assert!(half.is_empty(), "{path}: half-width colons in {half:?}");
    }
}

#[tokio::test]
async fn test_live_indicator_carries_the_communitys_utc_offset() {
    let (_dir, state) = server().await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/", &cookie)).await;
    assert!(
        page.contains("data-utc-offset-minutes=\"480\""),
        "the page tells its script the server's offset (default +8:00)"
    );
    let (_, _, js) = send(&state, get("/assets/app.js", "")).await;
    assert!(js.contains("utcOffsetMinutes") && !js.contains("toLocaleTimeString"));
}

#[tokio::test]
async fn test_reports_board_keeps_short_cells_on_one_line_and_its_buttons_side_by_side() {
    let (_dir, state) = server().await;
    let now = Utc::now();
    report(
        &state,
        "r1",
        now - Duration::minutes(5),
        Some(now - Duration::minutes(4)),
        "received",
    )
    .await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    // A grid, a type, a date and time, a status: each on one line; only the title wraps.
    let (_, _, css) = send(&state, get("/assets/app.css", "")).await;
    assert!(css_rule(&css, "table.board th, table.board td").contains("white-space: nowrap"));
    assert!(css_rule(&css, "table.board td.title").contains("white-space: normal"));
    let buttons = css_rule(&css, "table.board .buttons");
    assert!(
        buttons.contains("display: flex") && buttons.contains("gap:"),
        "{buttons}"
    );
    // The board and the overview's copy of it mark their cells alike.
    for path in ["/reports", "/"] {
        let (_, _, page) = send(&state, get(path, &cookie)).await;
        let rows = table(&page, "reports");
        let (head, body) = rows.split_first().unwrap();
        assert!(!body.is_empty(), "{path}");
        for row in body {
            assert_eq!(row.len(), head.len(), "{path}");
            let classes: Vec<&str> = row.iter().map(|c| c.class.as_str()).collect();
            assert_eq!(
                classes[..9],
                [
                    "grid", "type", "urgency", "title", "time", "time", "left", "reported",
                    "status"
                ],
                "{path}"
            );
        }
    }
    // Acknowledge and escalate sit in one row of buttons.
    let (_, _, board) = send(&state, get("/reports", &cookie)).await;
    let cell = &board[board.find("class=\"actions\"").unwrap()..];
    let cell = &cell[..cell.find("</td>").unwrap()];
    assert!(
        cell.starts_with("class=\"actions\"><div class=\"buttons\">"),
        "{cell}"
    );
    assert_eq!(cell.matches("<button").count(), 2, "{cell}");
}

#[tokio::test]
async fn test_a_list_field_reads_as_entries_with_local_time_kind_and_name() {
    let (_dir, state) = server().await;
    name_workers(&state).await;
    let (wang, li) = (worker("wang", ACTOR, "g1"), worker("li", LI, "g1"));
    let mut doc = case_doc("c1", "in_progress");
    upload(&state, &wang, "c1", "g1", &doc, &[]).await;
    let base = doc.get_heads();
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    add_action(
        &mut doc,
        "wang",
        &[
            ("kind", "benefit_application"),
            ("at", "2026-11-28T02:00:00Z"),
            ("by", "wang"),
            ("description", "提交残疾人两项补贴申请"),
        ],
    );
    edit(&mut theirs, "li", &[("plan", "联系区康复中心")]);
    upload(&state, &wang, "c1", "g1", &doc, &base).await;
    upload(&state, &li, "c1", "g1", &theirs, &base).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let en = format!("{cookie}; gs_lang=en");
    for (cookie, expected) in [
        (
            &cookie,
            "2026-11-28 10:00 · 申请待遇 · 提交残疾人两项补贴申请 · 王芳",
        ),
        (
            &en,
            "2026-11-28 10:00 · Benefit application · 提交残疾人两项补贴申请 · 王芳",
        ),
    ] {
        let actions = |rows: Vec<Vec<Cell>>| {
            let row = rows
                .into_iter()
                .find(|r| r[0].text == "帮扶措施" || r[0].text == "Actions")
                .unwrap();
            row[1].text.clone()
        };
        // The review page's merged result and the record page's fields say the same.
        let (_, _, review) = send(&state, get("/review/c1", cookie)).await;
        assert_eq!(actions(table(&review, "merged")), expected);
        let (_, _, record) = send(&state, get("/records/c1", cookie)).await;
        assert_eq!(actions(table(&record, "fields")), expected);
        let history = strip_tags(&record[record.find("id=\"history\"").unwrap()..]);
        assert!(history.contains(expected), "{history}");
        for page in [&review, &record] {
            let text = strip_tags(page);
            for raw in ["benefit_application", "&quot;kind&quot;", "T02:00"] {
                assert!(!text.contains(raw), "{raw} in {text}");
            }
        }
    }
}

/// A title names the record, not the person responsible: that person has a column of their
/// own, by name.
#[tokio::test]
async fn test_review_titles_name_the_record_and_the_responsible_worker_by_name() {
    let (_dir, state) = server().await;
    name_workers(&state).await;
    let (wang, li) = (worker("wang", ACTOR, "g1"), worker("li", LI, "g1"));
    let mut doc = case_doc("c1", "open");
    edit(&mut doc, "wang", &[("responsible", "wang")]);
    upload(&state, &wang, "c1", "g1", &doc, &[]).await;
    let base = doc.get_heads();
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    edit(&mut doc, "wang", &[("status", "assessing")]);
    edit(&mut theirs, "li", &[("status", "suspended")]);
    upload(&state, &wang, "c1", "g1", &doc, &base).await;
    upload(&state, &li, "c1", "g1", &theirs, &base).await;
    let (cookie, _) = sign_in(&state, "zhao").await;

    let (_, _, queue) = send(&state, get("/review", &cookie)).await;
    let rows = table(&queue, "records");
    assert_eq!(rows[1][0].text, "低保 · 张三");
    let worker = rows[0]
        .iter()
        .position(|h| h.text == "网格员/负责人")
        .unwrap();
    assert_eq!(rows[1][worker].text, "王芳");
    let (_, _, page) = send(&state, get("/review/c1", &cookie)).await;
    let (h1, _) = heading_and_nav(&page);
    assert_eq!(h1, "审核：低保 · 张三");
}

#[tokio::test]
async fn test_conflict_values_are_headed_and_a_new_status_is_one_the_lifecycle_allows() {
    let (_dir, state) = server().await;
    name_workers(&state).await;
    // wang: assessing, li: suspended.
    conflicted_case(&state, "c1").await;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/review/c1", &cookie)).await;
    let rows = table(&page, "values-status");
    let head: Vec<&str> = rows[0].iter().map(|c| c.text.as_str()).collect();
    assert_eq!(head, ["值", "修改人", "设备时间", "操作"]);
    assert_eq!(rows.len(), 3);
    for row in &rows[1..] {
        assert_eq!(row.len(), 4);
        assert!(row.iter().all(|c| c.tag == "td"), "{row:?}");
    }
    // Text and buttons on one line per value; the new value set apart from the table.
    let (_, _, css) = send(&state, get("/assets/app.css", "")).await;
    assert!(css_rule(&css, "table.values td").contains("vertical-align: middle"));
    assert!(css_rule(&css, "form.act.new-value").contains("margin-top"));

    // From assessing or suspended a case may go on, not back to draft or open.
    assert_eq!(
        options(&page, "class=\"act new-value\""),
        [
            "",
            "assessing",
            "in_progress",
            "closed",
            "referred",
            "suspended"
        ]
    );
    let draft = format!(
        "csrf={csrf}&field=status&value={}",
        super::super::layout::encode("草稿")
    );
    let (status, headers, _) = send(&state, post("/review/c1/resolve", &cookie, &draft)).await;
    let (_, page) = follow_error(&state, status, &headers, &cookie).await;
    assert!(
        strip_tags(&page)
            .contains("「状态」不能填「草稿」，只能选：评估中、帮扶中、已办结、已转介、已暂停"),
        "{page}"
    );
    let doc = state.relay.document("c1").await.unwrap().unwrap().doc;
    assert_eq!(
        gridsync_core::doc::conflicts(&doc).len(),
        1,
        "nothing written"
    );

    let (_, _, en) = send(&state, get("/review/c1", &format!("{cookie}; gs_lang=en"))).await;
    let rows = table(&en, "values-status");
    let head: Vec<&str> = rows[0].iter().map(|c| c.text.as_str()).collect();
    assert_eq!(head, ["Value", "Author", "Device time", "Action"]);
}

#[tokio::test]
async fn test_conflicting_people_are_shown_by_name() {
    let (_dir, state) = server().await;
    name_workers(&state).await;
    let (wang, li) = (worker("wang", ACTOR, "g1"), worker("li", LI, "g1"));
    let mut doc = case_doc("c1", "open");
    upload(&state, &wang, "c1", "g1", &doc, &[]).await;
    let base = doc.get_heads();
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    // Each hands the case to themselves while offline.
    edit(&mut doc, "wang", &[("responsible", "wang")]);
    edit(&mut theirs, "li", &[("responsible", "li")]);
    upload(&state, &wang, "c1", "g1", &doc, &base).await;
    upload(&state, &li, "c1", "g1", &theirs, &base).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/review/c1", &cookie)).await;
    let mut values: Vec<String> = table(&page, "values-responsible")[1..]
        .iter()
        .map(|row| {
            strip_tags(&row[0].text)
                .replace("当前显示", "")
                .trim()
                .to_string()
        })
        .collect();
    values.sort();
    assert_eq!(values, ["李娜", "王芳"], "{page}");
}

#[tokio::test]
async fn test_record_page_labels_every_field_shows_local_times_and_people_by_name() {
    let (_dir, state) = server().await;
    name_workers(&state).await;
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    for (k, v) in [
        ("id", "c1"),
        ("kind", "case"),
        ("grid_id", "g1"),
        ("schema_version", "1"),
        ("case_type", "low_income"),
        ("subject_name", "张三"),
        ("status", "in_progress"),
        ("responsible", "li"),
        ("created_by", "wang"),
        ("device_id", "phone-wang"),
        ("created_at", "2026-11-28T01:30:00Z"),
        ("updated_at", "2026-11-28T02:15:00Z"),
        ("updated_by", "wang"),
    ] {
        tx.put(ROOT, k, v).unwrap();
    }
    tx.commit_with(CommitOptions::default().with_message("wang"));
    upload(&state, &worker("wang", ACTOR, "g1"), "c1", "g1", &doc, &[]).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let en = format!("{cookie}; gs_lang=en");

    let (_, _, page) = send(&state, get("/records/c1", &cookie)).await;
    let rows = table(&page, "fields");
    for row in &rows {
        assert!(
            !row[0].text.chars().any(|c| c.is_ascii_alphabetic()),
            "untranslated label {}",
            row[0].text
        );
    }
    let value = |label: &str| {
        rows.iter()
            .find(|r| r[0].text == label)
            .unwrap_or_else(|| panic!("no {label} in {rows:?}"))[1]
            .text
            .clone()
    };
    assert_eq!(value("创建时间"), "2026-11-28 09:30");
    assert_eq!(value("更新时间"), "2026-11-28 10:15");
    assert_eq!(value("创建人"), "王芳");
    assert_eq!(value("负责人"), "李娜");
    assert_eq!(value("创建设备"), "phone-wang");
    let text = strip_tags(&page);
    assert!(!text.contains("T01:30"), "{text}");

    let (_, _, page) = send(&state, get("/records/c1", &en)).await;
    for row in table(&page, "fields") {
        assert!(
            !row[0].text.contains('_'),
            "untranslated label {}",
            row[0].text
        );
    }
}
