//! The office dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven through chromedriver with fantoccini, against a real relay and
//! real replicas. Without Chromium these tests say they were skipped and why; with
//! `GRIDSYNC_REQUIRE_BROWSER=1` (set by `.ci/run`) a missing browser fails them instead.
//! `GRIDSYNC_SCREENSHOTS=DIR` saves screenshots of the pages the tests visit.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

#[path = "dashboard/browser.rs"]
mod browser;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use browser::{Browser, browser_or_skip};
use fantoccini::Locator;
use gridsync_core::record::Kind;
use gridsync_e2e::{TestServer, fields, household, sync};
use gridsync_server::accounts::Role;
use serde_json::json;

/// A relay with community m1 (grids g1–g3), office user zhao, admin-less, and two workers.
async fn setup(dir: &Path) -> TestServer {
    let server = TestServer::start(&dir.join("server")).await;
    server.user("zhao", Role::Office, &["m1"]).await;
    server.user("vol", Role::Volunteer, &["g1"]).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_sign_in_and_live_overview_of_a_synced_record() {
    if !browser_or_skip("test_browser_sign_in_and_live_overview_of_a_synced_record") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let b = Browser::start().await;

    // Wrong password, then a role that may not use the dashboard: both refused, in Chinese.
    b.sign_in(&server, "zhao", "wrong").await;
    assert!(b.wait_for_text("用户名或密码错误", 5).await);
    b.sign_in(&server, "vol", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("此账号不能使用办公室系统", 5).await);

    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(
        b.wait_for_text("工作概览", 5).await,
        "{}",
        b.page_text().await
    );
    assert!(b.page_text().await.contains("第一网格"));
    let before: String = b.text("tr[data-grid=g1] .households").await;
    assert_eq!(before, "0");

    // A worker registers a household and syncs: the open overview shows it without a reload.
    tokio::time::sleep(Duration::from_millis(500)).await; // let the page's event stream open
    household(&mut wang, "张建国");
    sync(&mut wang).await;
    let mut shown = String::new();
    for _ in 0..100 {
        shown = b.text("tr[data-grid=g1] .households").await;
        if shown == "1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown, "1", "the overview did not update live");
    b.screenshot("overview-live").await;

    // The record list and the record page show it, with its history.
    b.goto(&format!("{}/records?kind=household", server.url()))
        .await;
    assert!(b.wait_for_text("张建国", 5).await);
    b.click("#records tbody tr a").await;
    assert!(b.wait_for_text("修改历史", 5).await);
    assert!(
        b.text("#history").await.contains("wang"),
        "the history names the author"
    );

    // English on request: every label switches.
    b.click("a.lang").await;
    assert!(b.wait_for_text("History", 5).await);
    b.click("a.lang").await;
    assert!(b.wait_for_text("修改历史", 5).await);
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_resolves_a_conflict_and_the_replica_receives_it() {
    if !browser_or_skip("test_browser_resolves_a_conflict_and_the_replica_receives_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let mut li = server.worker(&dir.path().join("li"), "li", &["g1"]).await;
    let h = household(&mut wang, "张三");
    let case = wang
        .create(
            Kind::Case,
            fields(json!({"case_type": "low_income", "household_id": h, "status": "open"})),
        )
        .unwrap()
        .id;
    // An urgent report, discovered 10 minutes ago and phoned in at once: on time, and its
    // 20-minute deadline is still running.
    let now = chrono::Utc::now();
    let report = wang
        .create(
            Kind::Report,
            fields(json!({
                "category": "safety_hazard", "urgency": "critical", "place": "3栋楼道",
                "description": "楼道堆放杂物，堵塞消防通道",
                "discovered_at": (now - chrono::Duration::minutes(10)).to_rfc3339(),
                "phoned_in_at": (now - chrono::Duration::minutes(8)).to_rfc3339(),
            })),
        )
        .unwrap()
        .id;
    sync(&mut wang).await;
    sync(&mut li).await;
    // Offline, both change the status differently; then both sync.
    wang.update(&case, fields(json!({"status": "assessing"})))
        .unwrap();
    li.update(&case, fields(json!({"status": "suspended"})))
        .unwrap();
    sync(&mut wang).await;
    sync(&mut li).await;
    sync(&mut wang).await;
    assert_eq!(wang.conflicts().unwrap().len(), 1);

    let b = Browser::start().await;
    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("工作概览", 5).await);
    b.screenshot("overview").await;
    b.goto(&format!("{}/review", server.url())).await;
    assert!(
        b.wait_for_text("字段冲突", 5).await,
        "{}",
        b.page_text().await
    );
    b.goto(&format!("{}/review/{case}", server.url())).await;
    let page = b.page_text().await;
    assert!(page.contains("评估中") && page.contains("已暂停"), "{page}");
    assert!(
        page.contains("wang") && page.contains("li"),
        "authors are shown: {page}"
    );
    b.screenshot("review").await;
    // Choose li's value.
    let rows = b
        .c()
        .find_all(Locator::Css("section.conflict tr"))
        .await
        .unwrap();
    let mut chosen = false;
    for row in rows {
        if row.text().await.unwrap().contains("已暂停") {
            row.find(Locator::Css("button.choose"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            chosen = true;
            break;
        }
    }
    assert!(chosen);
    assert!(
        b.wait_for_text("没有待审核的记录", 5).await,
        "{}",
        b.page_text().await
    );

    // The resolution is a change like a device's: it reaches the replica at its next sync.
    sync(&mut wang).await;
    assert_eq!(wang.get(&case).unwrap().fields["status"], "suspended");
    assert!(wang.conflicts().unwrap().is_empty());
    // And it is audited with the reviewer's name.
    b.goto(&format!("{}/records/{case}", server.url())).await;
    assert!(b.wait_for_text("zhao", 5).await);

    // Work from the office: move the case on; the worker's device receives it.
    b.c()
        .find(Locator::Css("#act-status select"))
        .await
        .unwrap()
        .select_by_value("in_progress")
        .await
        .unwrap();
    b.click("#act-status button").await;
    assert!(
        b.wait_for_text("已保存", 5).await,
        "{}",
        b.page_text().await
    );
    sync(&mut li).await;
    assert_eq!(li.get(&case).unwrap().fields["status"], "in_progress");

    // The urgent-reports board: time left, reported on time (phoned in); acknowledge it there.
    b.goto(&format!("{}/reports", server.url())).await;
    assert!(
        b.wait_for_text("按时报送", 5).await,
        "{}",
        b.page_text().await
    );
    let row = format!("tr[data-id='{report}']");
    assert!(b.text(&format!("{row} .countdown")).await.contains("分钟"));
    b.screenshot("reports").await;
    b.click(&format!("{row} form button")).await;
    assert!(
        b.wait_for_text("已确认", 5).await,
        "{}",
        b.page_text().await
    );
    sync(&mut li).await;
    assert_eq!(li.get(&report).unwrap().fields["status"], "acknowledged");
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_downloads_csv_and_xlsx_of_a_filtered_list() {
    if !browser_or_skip("test_browser_downloads_csv_and_xlsx_of_a_filtered_list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let h = household(&mut wang, "李秀英");
    for (t, name) in [("low_income", "李秀英"), ("disability", "王小明")] {
        wang.create(
            Kind::Case,
            fields(
                json!({"case_type": t, "household_id": h, "subject_name": name, "status": "open"}),
            ),
        )
        .unwrap();
    }
    sync(&mut wang).await;

    let b = Browser::start().await;
    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("工作概览", 5).await);
    b.goto(&format!(
        "{}/records?kind=case&type=low_income",
        server.url()
    ))
    .await;
    assert!(b.wait_for_text("1 条", 5).await, "{}", b.page_text().await);

    b.click("#export-csv").await;
    let csv = String::from_utf8(b.download("csv").await).unwrap();
    assert!(csv.starts_with('\u{feff}'), "BOM for Excel");
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert!(
        lines[0].starts_with("编号,类别,网格,标题,类型,状态"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 2, "the filter applies to the export: {csv}");
    assert!(
        lines[1].contains("帮扶个案") && lines[1].contains("低保") && lines[1].contains("李秀英")
    );
    assert!(!csv.contains("王小明"));

    b.click("#export-xlsx").await;
    let xlsx = b.download("xlsx").await;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).unwrap();
    let mut shared = String::new();
    zip.by_name("xl/sharedStrings.xml")
        .unwrap()
        .read_to_string(&mut shared)
        .unwrap();
    let mut sheet = String::new();
    zip.by_name("xl/worksheets/sheet1.xml")
        .unwrap()
        .read_to_string(&mut sheet)
        .unwrap();
    // Cell C1 is the header 网格; C2 holds the grid's name.
    let strings: Vec<String> = shared
        .split("<t>")
        .skip(1)
        .map(|s| s[..s.find("</t>").unwrap()].to_string())
        .collect();
    let cell = |r: &str| -> String {
        let at = sheet
            .find(&format!("r=\"{r}\""))
            .unwrap_or_else(|| panic!("no cell {r}"));
        let v = &sheet[at..];
        let value = &v[v.find("<v>").unwrap() + 3..v.find("</v>").unwrap()];
        strings[value.parse::<usize>().unwrap()].clone()
    };
    assert_eq!(cell("C1"), "网格");
    assert_eq!(cell("C2"), "第一网格");
    assert_eq!(cell("E2"), "低保");
    assert!(!shared.contains("王小明"));

    // The monthly report exports too, with a row per grid and a total.
    b.goto(&format!("{}/stats", server.url())).await;
    assert!(b.wait_for_text("月度统计", 5).await);
    b.close().await;
    server.stop().await;
}

/// Where the text of each cell of a table's header and first body row ends, and whether the
/// table fits: what a reader sees of the columns.
const LAYOUT: &str = r#"
const table = document.querySelector(arguments[0]);
const right = el => { const r = document.createRange(); r.selectNodeContents(el); return r.getBoundingClientRect().right; };
const heads = Array.from(table.querySelectorAll('thead th')).map(right);
const cells = Array.from(table.querySelectorAll('tbody tr:first-child > *')).map(right);
const box = table.getBoundingClientRect();
return { heads, cells, table_right: box.right, names: Array.from(table.querySelectorAll('thead th')).map(th => th.textContent),
         last_head_right: table.querySelector('thead th:last-child').getBoundingClientRect().right };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_overview_at_1366_px_lines_up_fits_and_tells_community_time() {
    if !browser_or_skip("test_browser_overview_at_1366_px_lines_up_fits_and_tells_community_time") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let h = household(&mut wang, "张建国");
    wang.create(
        Kind::Case,
        fields(json!({"case_type": "low_income", "household_id": h, "status": "open"})),
    )
    .unwrap();
    sync(&mut wang).await;
    let b = Browser::start().await;
    b.c().set_window_size(1366, 900).await.unwrap();
    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("工作概览", 5).await);

    // Each number ends where its column's header ends.
    for table in ["#overview", "#cases-by"] {
        let layout = b.c().execute(LAYOUT, vec![json!(table)]).await.unwrap();
        let heads: Vec<f64> = serde_json::from_value(layout["heads"].clone()).unwrap();
        let cells: Vec<f64> = serde_json::from_value(layout["cells"].clone()).unwrap();
        let names = &layout["names"];
        assert_eq!(heads.len(), cells.len());
        for (i, (h, c)) in heads.iter().zip(&cells).enumerate().skip(1) {
            assert!(
                (h - c).abs() < 2.0,
                "{table}: the number under {} ends at {c}, its header at {h}",
                names[i]
            );
        }
    }

    // A live update says when, in the community's time (+8:00), not the browser's (New York).
    tokio::time::sleep(Duration::from_millis(500)).await;
    household(&mut wang, "李秀英");
    sync(&mut wang).await;
    let mut shown = String::new();
    for _ in 0..100 {
        shown = b.text(".live-state").await;
        if shown.contains("已更新") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let community = |ago: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(480 - ago))
            .format("%H:%M:")
            .to_string()
    };
    assert!(
        shown.contains(&community(0)) || shown.contains(&community(1)),
        "{shown} is not the community's time {}",
        community(0)
    );
    b.screenshot("overview-1366").await;

    // In English the open-cases table stays inside its half of the page: every status header
    // is visible, none hidden behind the incidents next to it.
    b.click("a.lang").await;
    assert!(b.wait_for_text("Open cases by type and status", 5).await);
    let layout = b
        .c()
        .execute(LAYOUT, vec![json!("#cases-by")])
        .await
        .unwrap();
    let neighbour = b
        .c()
        .execute(
            "return document.querySelector('#incidents-by').getBoundingClientRect().left;",
            vec![],
        )
        .await
        .unwrap();
    let last = layout["last_head_right"].as_f64().unwrap();
    assert!(
        last <= neighbour.as_f64().unwrap(),
        "the {} header ends at {last}, under the incidents table at {neighbour}",
        layout["names"].as_array().unwrap().last().unwrap()
    );
    b.screenshot("overview-1366-en").await;
    b.close().await;
    server.stop().await;
}

/// Per row of the reports table: each cell's class and how many lines its text takes, the
/// phoned-in note's lines, and where the row's buttons are; and whether the page scrolls
/// sideways.
const BOARD_LAYOUT: &str = r#"
const lines = el => {
  const r = document.createRange(); r.selectNodeContents(el);
  return new Set(Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => Math.round(x.top))).size;
};
const rows = Array.from(document.querySelectorAll('#reports tbody tr')).map(tr => ({
  cells: Array.from(tr.children).filter(td => !td.matches('.title, .reported, .actions')).map(td => [td.className, lines(td)]),
  reported: Array.from(tr.querySelectorAll('td.reported > :not(br)')).map(lines),
  buttons: Array.from(tr.querySelectorAll('td.actions button')).map(b => { const r = b.getBoundingClientRect(); return [r.left, r.right, r.top]; }),
}));
return { rows, page: document.documentElement.scrollWidth, viewport: window.innerWidth };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_reports_board_fits_1280_and_1366_px_with_short_cells_on_one_line() {
    if !browser_or_skip(
        "test_browser_reports_board_fits_1280_and_1366_px_with_short_cells_on_one_line",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    // The longest type, a report phoned in, and long titles: what made the cells wrap.
    let now = chrono::Utc::now();
    for (category, urgency, ago, phoned) in [
        ("group_incident_sign", "urgent", 180, Some(160)),
        ("safety_hazard", "critical", 120, None),
        ("livelihood_request", "normal", 30, None),
    ] {
        let mut f = json!({
            "category": category, "urgency": urgency, "place": "建设新村2栋",
            "description": "楼上漏水引发邻里纠纷，双方发生争执，多位老人无法下楼",
            "discovered_at": (now - chrono::Duration::minutes(ago)).to_rfc3339(),
        });
        if let Some(p) = phoned {
            f["phoned_in_at"] = json!((now - chrono::Duration::minutes(p)).to_rfc3339());
        }
        wang.create(Kind::Report, fields(f)).unwrap();
    }
    sync(&mut wang).await;
    let b = Browser::start().await;
    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("工作概览", 5).await);
    for width in [1280, 1366] {
        b.c().set_window_size(width, 900).await.unwrap();
        b.goto(&format!("{}/reports", server.url())).await;
        assert!(b.wait_for_text("过时限待确认", 5).await);
        let layout = b.c().execute(BOARD_LAYOUT, vec![]).await.unwrap();
        let page = layout["page"].as_f64().unwrap();
        let viewport = layout["viewport"].as_f64().unwrap();
        assert!(page <= viewport, "{width} px: the page is {page} px wide");
        let rows = layout["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        for row in rows {
            for cell in row["cells"].as_array().unwrap() {
                assert_eq!(cell[1], 1, "{width} px: a {} cell wraps: {row}", cell[0]);
            }
            for note in row["reported"].as_array().unwrap() {
                assert_eq!(note, 1, "{width} px: the reported cell wraps: {row}");
            }
            // Acknowledge and escalate side by side, apart.
            let buttons: Vec<Vec<f64>> = serde_json::from_value(row["buttons"].clone()).unwrap();
            assert_eq!(buttons.len(), 2, "{row}");
            assert!(
                (buttons[0][2] - buttons[1][2]).abs() < 1.0 && buttons[1][0] - buttons[0][1] >= 4.0,
                "{width} px: buttons at {buttons:?}"
            );
        }
        b.screenshot(&format!("reports-{width}")).await;
    }
    b.close().await;
    server.stop().await;
}

/// Whether the page scrolls sideways at the window's width.
const FITS: &str = "return document.documentElement.scrollWidth <= window.innerWidth;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_dispatches_a_task_the_device_handles_and_the_office_verifies() {
    if !browser_or_skip("test_browser_dispatches_a_task_the_device_handles_and_the_office_verifies")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    // Work already on the board: one overdue (its deadline passed two hours ago), one handled.
    let now = chrono::Utc::now();
    for (title, hours, status) in [
        ("修复5栋路灯", -2, "dispatched"),
        ("清理消防通道杂物", 20, "handled"),
    ] {
        wang.create(
            Kind::Task,
            fields(json!({
                "title": title, "source": "incident", "assignee": "wang", "status": status,
                "deadline": (now + chrono::Duration::hours(hours)).to_rfc3339(),
            })),
        )
        .unwrap();
    }
    sync(&mut wang).await;

    let b = Browser::start().await;
    b.c().set_window_size(1366, 900).await.unwrap();
    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("工作概览", 5).await);

    // The office dispatches a task to wang, with the office's default deadline.
    b.goto(&format!("{}/tasks", server.url())).await;
    assert!(
        b.wait_for_text("逾期未办", 5).await,
        "{}",
        b.page_text().await
    );
    b.click("#new-task").await;
    assert!(b.wait_for_text("任务内容", 5).await);
    b.fill("#task-title", "3栋楼道加装照明").await;
    b.c()
        .find(Locator::Css("#task-assignee"))
        .await
        .unwrap()
        .select_by_value("wang")
        .await
        .unwrap();
    let proposed = b
        .c()
        .find(Locator::Css("#task-deadline"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    let in_72_hours = (now + chrono::Duration::hours(72 + 8))
        .format("%Y-%m-%dT")
        .to_string();
    assert!(
        proposed.starts_with(&in_72_hours),
        "default deadline {proposed}"
    );
    b.click("#dispatch-task").await;
    assert!(
        b.wait_for_text("已派单", 5).await,
        "{}",
        b.page_text().await
    );
    assert!(b.page_text().await.contains("3栋楼道加装照明"));
    // The overdue task is red, first; the handled one waits for the office's check.
    let first = b.text("#tasks tbody tr:first-child").await;
    assert!(
        first.contains("修复5栋路灯") && first.contains("逾期"),
        "{first}"
    );
    let red = b
        .c()
        .execute(
            "return getComputedStyle(document.querySelector('#tasks tbody tr.late td')).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(red, json!("rgb(255, 241, 238)"), "the overdue row is red");
    assert_eq!(b.c().execute(FITS, vec![]).await.unwrap(), json!(true));
    b.screenshot("tasks-board-1366").await;

    // The device receives it, accepts and handles it, and syncs.
    sync(&mut wang).await;
    let mine = wang
        .list(&gridsync_core::Query {
            kind: Some(Kind::Task),
            assigned_to: Some("wang".into()),
            not_closed: true,
            by_due: true,
            ..gridsync_core::Query::default()
        })
        .unwrap();
    let task = mine
        .iter()
        .find(|r| r.title == "3栋楼道加装照明")
        .expect("the dispatched task reached the device")
        .id
        .clone();
    assert_eq!(wang.get(&task).unwrap().fields["status"], "dispatched");
    for (status, note) in [("accepted", "已接单"), ("handled", "已安装声控灯")] {
        wang.update(
            &task,
            fields(json!({
                "status": status,
                "updates": [{"at": chrono::Utc::now().to_rfc3339(), "by": "wang", "status": status, "note": note}],
            })),
        )
        .unwrap();
    }
    sync(&mut wang).await;

    // The office verifies it, then closes it, in the browser.
    let row = format!("#tasks tr[data-id='{task}']");
    b.goto(&format!("{}/tasks", server.url())).await;
    assert!(
        b.wait_for_text("按期办理", 5).await,
        "{}",
        b.page_text().await
    );
    b.click(&format!("{row} .op-verified button")).await;
    let mut status = String::new();
    for _ in 0..50 {
        status = b.text(&format!("{row} .status")).await;
        if status == "已核查" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "已核查");
    b.click(&format!("{row} .op-closed button")).await;
    // The form's answer may still be on its way: leaving the page at once could cancel it.
    let mut closed = false;
    for _ in 0..50 {
        b.goto(&format!("{}/records/{task}", server.url())).await;
        if b.page_text().await.contains("已结案") {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "{}", b.page_text().await);

    // The device receives the closed task: it leaves the worker's plan.
    sync(&mut wang).await;
    let done = wang.get(&task).unwrap();
    assert_eq!(done.fields["status"], "closed");
    let by: Vec<&str> = done.fields["updates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["by"].as_str())
        .collect();
    assert_eq!(by, ["zhao", "wang", "wang", "zhao", "zhao"]);
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_love_supermarket_at_1366_px_shows_stock_and_who_received_what() {
    if !browser_or_skip(
        "test_browser_love_supermarket_at_1366_px_shows_stock_and_who_received_what",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let zhang = household(&mut wang, "张建国");
    let li = household(&mut wang, "李秀英");
    let unit = wang
        .create(
            Kind::Unit,
            fields(json!({"name": "区税务局", "unit_type": "government"})),
        )
        .unwrap()
        .id;
    let at = |h: i64| (chrono::Utc::now() - chrono::Duration::hours(h)).to_rfc3339();
    for (item, measure, low, moves) in [
        (
            "大米",
            "袋",
            5,
            json!([
                {"kind": "in", "quantity": 10, "at": at(5), "donor_unit_id": unit},
                {"kind": "out", "quantity": 3, "at": at(4), "household_id": zhang},
                {"kind": "out", "quantity": 4, "at": at(3), "household_id": li},
            ]),
        ),
        (
            "食用油",
            "桶",
            2,
            json!([
                {"kind": "in", "quantity": 6, "at": at(5), "donor_name": "王大爷"},
                {"kind": "out", "quantity": 1, "at": at(2), "household_id": zhang},
            ]),
        ),
    ] {
        wang.create(
            Kind::Stock,
            fields(json!({"item": item, "measure": measure, "low_at": low, "movements": moves})),
        )
        .unwrap();
    }
    sync(&mut wang).await;

    let b = Browser::start().await;
    b.c().set_window_size(1366, 900).await.unwrap();
    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("工作概览", 5).await);
    // Low stock on the overview.
    assert!(
        b.text("#low-stock").await.contains("大米"),
        "{}",
        b.page_text().await
    );
    b.click("header nav a[href='/supermarket']").await;
    assert!(
        b.wait_for_text("物品库存", 5).await,
        "{}",
        b.page_text().await
    );
    let rice = b.text("#stock tbody tr:first-child").await;
    assert!(rice.contains("大米") && rice.contains("库存不足"), "{rice}");
    assert_eq!(
        b.text("#stock tbody tr:first-child .on-hand").await,
        "3 库存不足"
    );
    let received = b.text("#recipients").await;
    assert!(
        received.contains("李秀英") && received.contains("4 袋") && received.contains("1 桶"),
        "{received}"
    );
    assert_eq!(b.c().execute(FITS, vec![]).await.unwrap(), json!(true));
    b.screenshot("supermarket-1366").await;
    b.close().await;
    server.stop().await;
}

/// Where each of the review page's text versions sits, and whether the page scrolls sideways.
const VERSIONS: &str = r#"
const boxes = Array.from(document.querySelectorAll('.text-conflict figure.version'))
  .map(f => { const r = f.getBoundingClientRect(); return [r.left, r.right, r.top]; });
return { boxes, fits: document.documentElement.scrollWidth <= window.innerWidth };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_record_household_and_review_pages_at_1366_px_read_without_help() {
    if !browser_or_skip(
        "test_browser_record_household_and_review_pages_at_1366_px_read_without_help",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let mut li = server.worker(&dir.path().join("li"), "li", &["g1"]).await;
    let h = wang
        .create(
            Kind::Household,
            fields(json!({
                "head_name": "李四", "household_type": "registered", "visit_class": "priority",
                "address": {"estate": "幸福小区", "building": "3", "unit": "2", "door": "301"},
                "residents": [
                    {"name": "李四", "relation": "户主", "phone": "13800000000",
                     "id_number": "110101195001011234", "health": "高血压"},
                    {"name": "李小明", "relation": "子", "employment": "外出务工"},
                ],
            })),
        )
        .unwrap()
        .id;
    // A case about the household without a subject of its own, and one whose status two
    // workers change at once.
    let case = wang
        .create(
            Kind::Case,
            fields(json!({"case_type": "elderly_care", "household_id": h, "status": "open"})),
        )
        .unwrap()
        .id;
    let settled = wang
        .create(
            Kind::Case,
            fields(
                json!({"case_type": "low_income", "household_id": h, "subject_name": "李小明",
                          "status": "open"}),
            ),
        )
        .unwrap()
        .id;
    let now = chrono::Utc::now();
    wang.create(
        Kind::Visit,
        fields(
            json!({"household_id": h, "visit_type": "routine", "outcome": "met",
                      "started_at": (now - chrono::Duration::hours(2)).to_rfc3339(),
                      "observations": "老人独居，行动不便"}),
        ),
    )
    .unwrap();
    wang.create(
        Kind::Task,
        fields(
            json!({"title": "联系助餐服务", "source": "visit_issue", "household_id": h,
                      "assignee": "wang", "status": "dispatched",
                      "deadline": (now + chrono::Duration::hours(48)).to_rfc3339()}),
        ),
    )
    .unwrap();
    sync(&mut wang).await;
    sync(&mut li).await;
    // Offline, both add to the case's note, and both change the other case's status.
    wang.update(&case, fields(json!({"notes": "申请人外出务工"})))
        .unwrap();
    li.update(&case, fields(json!({"notes": "已联系低保专干"})))
        .unwrap();
    wang.update(&settled, fields(json!({"status": "assessing"})))
        .unwrap();
    li.update(&settled, fields(json!({"status": "suspended"})))
        .unwrap();
    sync(&mut wang).await;
    sync(&mut li).await;
    sync(&mut wang).await;
    // wang sees the conflict on the phone and settles it there.
    assert_eq!(wang.conflicts().unwrap().len(), 1);
    wang.update(&settled, fields(json!({"status": "in_progress"})))
        .unwrap();
    sync(&mut wang).await;

    let b = Browser::start().await;
    // 1366 px wide, tall enough for a screenshot to show a whole record.
    b.c().set_window_size(1366, 1800).await.unwrap();
    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("工作概览", 5).await);

    // The case: titled by its household, the household and the device by name.
    b.goto(&format!("{}/records/{case}", server.url())).await;
    assert!(b.wait_for_text("修改历史", 5).await);
    assert_eq!(b.text("h1").await, "养老照护 · 李四 幸福小区-3-2-301");
    assert_eq!(
        b.text("#fields tr[data-field=household_id] td").await,
        "李四 幸福小区-3-2-301"
    );
    assert_eq!(
        b.text("#fields tr[data-field=device_id] td").await,
        "测试设备（wang 测试）"
    );
    assert_eq!(b.text("#fields tr[data-field=subject_name] td").await, "无");
    let options = b
        .c()
        .execute(
            "return Array.from(document.querySelectorAll('#responsible option')).map(o => o.value);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(options, json!(["", "li", "wang", "zhao"]));
    assert_eq!(b.c().execute(FITS, vec![]).await.unwrap(), json!(true));
    b.screenshot("record-1366").await;

    // The household: its residents (the ID number masked) and its records.
    b.click("#fields tr[data-field=household_id] a").await;
    assert!(
        b.wait_for_text("成员 (2)", 5).await,
        "{}",
        b.page_text().await
    );
    let residents = b.text("#residents").await;
    assert!(
        residents.contains("1101**********1234") && !residents.contains("110101195001011234"),
        "{residents}"
    );
    assert!(b.text("#household-visit").await.contains("常规走访"));
    assert!(b.text("#household-case").await.contains("养老照护 · 李四"));
    assert!(b.text("#household-case").await.contains("低保 · 李小明"));
    assert!(b.text("#household-task").await.contains("联系助餐服务"));
    assert_eq!(b.c().execute(FITS, vec![]).await.unwrap(), json!(true));
    b.screenshot("household-1366").await;

    // The queue: the note awaits review, the status a phone settled is listed as settled.
    b.c().set_window_size(1366, 900).await.unwrap();
    b.goto(&format!("{}/review", server.url())).await;
    assert!(b.wait_for_text("最近已解决", 5).await);
    assert!(b.text("#records").await.contains("养老照护 · 李四"));
    let recent = b.text("#settled").await;
    assert!(
        recent.contains("低保 · 李小明") && recent.contains("wang 测试"),
        "{recent}"
    );
    assert_eq!(b.c().execute(FITS, vec![]).await.unwrap(), json!(true));
    b.screenshot("review-queue-1366").await;

    // The note: both versions side by side, and the merged text to rewrite.
    b.goto(&format!("{}/review/{case}", server.url())).await;
    assert!(b.wait_for_text("同一段文字被两人同时修改", 5).await);
    let layout = b.c().execute(VERSIONS, vec![]).await.unwrap();
    let boxes: Vec<Vec<f64>> = serde_json::from_value(layout["boxes"].clone()).unwrap();
    assert_eq!(boxes.len(), 2, "{layout}");
    assert!(
        (boxes[0][2] - boxes[1][2]).abs() < 1.0 && boxes[0][1] <= boxes[1][0],
        "side by side: {boxes:?}"
    );
    assert_eq!(layout["fits"], json!(true));
    let versions = b.text(".versions").await;
    assert!(
        versions.contains("申请人外出务工") && versions.contains("已联系低保专干"),
        "{versions}"
    );
    b.screenshot("review-text-1366").await;
    b.fill(
        ".text-conflict textarea",
        "申请人外出务工；已联系低保专干。",
    )
    .await;
    b.click(".text-conflict button").await;
    assert!(
        b.wait_for_text("已解决", 5).await,
        "{}",
        b.page_text().await
    );
    assert!(!b.page_text().await.contains("同一段文字被两人同时修改"));
    sync(&mut li).await;
    assert_eq!(
        li.get(&case).unwrap().fields["notes"],
        "申请人外出务工；已联系低保专干。"
    );
    b.close().await;
    server.stop().await;
}

/// The street office's overview in a browser: a row per community with the household a worker
/// synced, a total, and a click on the community to its own overview by grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_street_overview_by_community_drills_down_to_its_grids() {
    if !browser_or_skip("test_browser_street_overview_by_community_drills_down_to_its_grids") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    server.user("jie", Role::Office, &["s1"]).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    household(&mut wang, "张建国");
    sync(&mut wang).await;
    let b = Browser::start().await;
    b.c().set_window_size(1366, 900).await.unwrap();
    b.sign_in(&server, "jie", gridsync_e2e::PASSWORD).await;
    assert!(
        b.wait_for_text("各社区汇总", 5).await,
        "{}",
        b.page_text().await
    );
    assert_eq!(
        b.text("#by-community tr[data-area=m1] .households").await,
        "1"
    );
    assert_eq!(
        b.text("#by-community tr[data-area=m2] .households").await,
        "0"
    );
    assert_eq!(b.text("#by-community tr.total .households").await, "1");
    b.screenshot("street-overview-1366").await;

    b.click("#by-community tr[data-area=m1] a").await;
    assert!(
        b.wait_for_text("第三网格", 5).await,
        "{}",
        b.page_text().await
    );
    assert_eq!(b.text("tr[data-grid=g1] .households").await, "1");
    assert!(b.text("#trail").await.contains("和平社区"));
    assert!(!b.page_text().await.contains("光明一网格"));
    b.screenshot("street-community-1366").await;
    b.close().await;
    server.stop().await;
}
