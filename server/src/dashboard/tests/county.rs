//! The county and street view on a known data set: two streets, three communities, four grids.
//! Every figure per community, per street and in total is exact; a community drills down to its
//! grids; an area outside the account's scope is refused; a community account sees its grids.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::attachments::record;
use super::pages::table;
use super::*;
use crate::storage::utc_string;

/// 清河县 > 城关街道 (东风社区: two grids, 向阳社区: one) and 城南街道 (新华社区: one), beside
/// the two communities of [`server`] that belong to no street. Accounts: the county office, the
/// 城关 street office and the 东风 community office.
async fn county() -> (tempfile::TempDir, Arc<AppState>) {
    let (dir, state) = server().await;
    let areas = [
        ("x", None, "county", "清河县"),
        ("s1", Some("x"), "street", "城关街道"),
        ("s2", Some("x"), "street", "城南街道"),
        ("ca", Some("s1"), "community", "东风社区"),
        ("cb", Some("s1"), "community", "向阳社区"),
        ("cc", Some("s2"), "community", "新华社区"),
        ("ga1", Some("ca"), "grid", "东风一网格"),
        ("ga2", Some("ca"), "grid", "东风二网格"),
        ("gb1", Some("cb"), "grid", "向阳一网格"),
        ("gc1", Some("cc"), "grid", "新华一网格"),
    ];
    for (id, parent, level, name) in areas {
        state
            .accounts
            .add_area(Area {
                id: id.into(),
                parent_id: parent.map(String::from),
                level: level.into(),
                name: name.into(),
            })
            .await
            .unwrap();
    }
    for (name, area) in [("xian", "x"), ("jie", "s1"), ("dongfeng", "ca")] {
        let user = state
            .accounts
            .add_user(NewUser {
                username: name.into(),
                display_name: format!("{name}-名"),
                role: Role::Office,
                password_hash: accounts::hash_password("pw-2026").unwrap(),
            })
            .await
            .unwrap();
        state
            .accounts
            .set_user_areas(&user.id, &[area.into()])
            .await
            .unwrap();
    }
    let ago = |minutes: i64| utc_string(Utc::now() - Duration::minutes(minutes));
    let household = |name: &str| json!({"head_name": name, "household_type": "registered"});
    let visit = |h: &str, at: String| json!({"household_id": h, "visit_type": "routine", "outcome": "met", "started_at": at});
    let case = |status: &str| json!({"case_type": "low_income", "subject_name": "张三", "status": status, "actions": []});
    let report = |urgency: &str, discovered: String, status: &str| {
        json!({"category": "safety_hazard", "urgency": urgency, "place": "3栋",
               "description": "楼道堆放杂物", "discovered_at": discovered, "status": status})
    };
    let task = |deadline: String, status: &str| {
        json!({"title": "清理楼道", "source": "office", "assignee": "wang",
               "deadline": deadline, "status": status})
    };
    let stock = |low_at: u32, ins: u32, outs: u32| {
        json!({"item": "大米", "measure": "袋", "low_at": low_at, "movements": [
            {"kind": "in", "quantity": ins, "at": ago(120)},
            {"kind": "out", "quantity": outs, "at": ago(60)},
        ]})
    };
    let records: Vec<(&str, &str, &str, Value)> = vec![
        ("household", "h1", "ga1", household("李一")),
        ("household", "h2", "ga1", household("李二")),
        ("visit", "v1", "ga1", visit("h1", ago(1))),
        ("visit", "v2", "ga1", visit("h2", ago(60 * 24 * 40))),
        ("case", "k1", "ga1", case("open")),
        // Critical: 20 minutes. Discovered two hours ago, not acknowledged: past its deadline.
        (
            "report",
            "r1",
            "ga1",
            report("critical", ago(120), "received"),
        ),
        ("stock", "st1", "ga1", stock(5, 10, 7)),
        ("household", "h3", "ga2", household("王三")),
        ("case", "k2", "ga2", case("closed")),
        (
            "report",
            "r2",
            "ga2",
            report("critical", ago(5), "received"),
        ),
        ("task", "t1", "ga2", task(ago(60), "dispatched")),
        ("household", "h4", "gb1", household("赵四")),
        ("visit", "v3", "gb1", visit("h4", ago(2))),
        (
            "report",
            "r3",
            "gb1",
            report("normal", ago(60 * 24 * 3), "acknowledged"),
        ),
        ("task", "t2", "gb1", task(ago(-60 * 24), "dispatched")),
        ("household", "h5", "gc1", household("孙五")),
        ("household", "h6", "gc1", household("孙六")),
        ("household", "h7", "gc1", household("孙七")),
        ("case", "k3", "gc1", case("in_progress")),
        ("report", "r4", "gc1", report("urgent", ago(600), "closed")),
        ("stock", "st2", "gc1", stock(2, 6, 1)),
        ("task", "t3", "gc1", task(ago(30), "accepted")),
        // Another community's grid outside the county: never counted in it.
        ("household", "h9", "g9", household("周九")),
    ];
    for (kind, id, grid, fields) in records {
        record(&state, kind, id, grid, fields).await;
    }
    (dir, state)
}

/// The rows of a table by their first name cell (a street's or community's, or 合计), each
/// with its numbers.
fn figures(page: &str, id: &str) -> Vec<(String, Vec<String>)> {
    table(page, id)
        .into_iter()
        .skip(1)
        .map(|row| {
            let name = row
                .iter()
                .find(|c| c.tag == "th")
                .map(|c| c.text.clone())
                .unwrap_or_default();
            let numbers = row
                .iter()
                .filter(|c| c.class.contains("num"))
                .map(|c| c.text.clone())
                .collect();
            (name, numbers)
        })
        .collect()
}

fn row(name: &str, numbers: &[u64]) -> (String, Vec<String>) {
    (
        name.to_string(),
        numbers.iter().map(u64::to_string).collect(),
    )
}

#[tokio::test]
async fn test_county_overview_rolls_figures_up_by_street_and_community_with_totals() {
    let (_dir, state) = county().await;
    let (cookie, _) = sign_in(&state, "xian").await;
    let (status, _, page) = send(&state, get("/", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    // Households, visits this month, open cases, open reports, past deadline, tasks overdue,
    // low stock.
    let total = [7, 2, 2, 3, 1, 2, 1];
    assert_eq!(
        figures(&page, "by-street"),
        [
            row("城关街道", &[4, 2, 1, 3, 1, 1, 1]),
            row("城南街道", &[3, 0, 1, 0, 0, 1, 0]),
            row("合计", &total),
        ]
    );
    assert_eq!(
        figures(&page, "by-community"),
        [
            row("东风社区", &[3, 1, 1, 2, 1, 1, 1]),
            row("向阳社区", &[1, 1, 0, 1, 0, 0, 0]),
            row("新华社区", &[3, 0, 1, 0, 0, 1, 0]),
            row("合计", &total),
        ]
    );
    assert!(page.contains("href=\"/?area=ca\""), "{page}");
    assert!(page.contains("href=\"/?area=s2\""));
    assert!(
        !page.contains("光明社区") && !page.contains("id=\"overview\""),
        "no community outside the county, no table of every grid"
    );
    let (_, _, live) = send(&state, get("/overview/live", &cookie)).await;
    assert_eq!(figures(&live, "by-community").len(), 4, "the live part too");

    let (_, _, en) = send(&state, get("/", &format!("{cookie}; gs_lang=en"))).await;
    assert!(
        en.contains("By community") && en.contains("Tasks overdue"),
        "{en}"
    );

    // The street office sees its own street's communities, and no table of one street.
    let (cookie, _) = sign_in(&state, "jie").await;
    let (_, _, page) = send(&state, get("/", &cookie)).await;
    assert_eq!(
        figures(&page, "by-community"),
        [
            row("东风社区", &[3, 1, 1, 2, 1, 1, 1]),
            row("向阳社区", &[1, 1, 0, 1, 0, 0, 0]),
            row("合计", &[4, 2, 1, 3, 1, 1, 1]),
        ]
    );
    assert!(!page.contains("id=\"by-street\"") && !page.contains("新华社区"));
}

#[tokio::test]
async fn test_a_community_drills_down_to_its_grids_and_an_area_outside_the_scope_is_refused() {
    let (_dir, state) = county().await;
    let (cookie, _) = sign_in(&state, "xian").await;
    let (status, _, page) = send(&state, get("/?area=ca", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let grids: Vec<(String, String)> = table(&page, "overview")
        .into_iter()
        .skip(1)
        .map(|r| (r[0].text.clone(), r[1].text.clone()))
        .collect();
    assert_eq!(
        grids,
        [
            ("东风一网格".to_string(), "2".to_string()),
            ("东风二网格".to_string(), "1".to_string())
        ],
        "the community's grids with their households"
    );
    assert!(page.contains("/records?grid=ga1"), "each grid links on");
    assert!(page.contains("id=\"trail\"") && page.contains("城关街道"));
    let (_, _, street) = send(&state, get("/?area=s2", &cookie)).await;
    assert_eq!(
        figures(&street, "by-community"),
        [
            row("新华社区", &[3, 0, 1, 0, 0, 1, 0]),
            row("合计", &[3, 0, 1, 0, 0, 1, 0])
        ]
    );
    // A community's grid filter narrows on within it.
    let (_, _, one) = send(&state, get("/?area=ca&grid=ga2", &cookie)).await;
    assert_eq!(
        table(&one, "overview").len(),
        2,
        "the header and 东风二网格"
    );

    let (cookie, _) = sign_in(&state, "jie").await;
    for path in [
        "/?area=cc",
        "/?area=s2",
        "/?area=m1",
        "/?area=ga1",
        "/?area=x",
        "/?area=nowhere",
        "/overview/live?area=cc",
        "/reports?area=cc",
        "/stats?area=cc",
        "/stats/export.csv?area=cc",
        "/stats/export.xlsx?area=s2",
    ] {
        let (status, _, page) = send(&state, get(path, &cookie)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.contains("该区域不在您的管辖范围内"), "{path}: {page}");
        assert!(!page.contains("新华"), "{path}");
    }
    let (status, _, _) = send(&state, get("/?area=cb", &cookie)).await;
    assert_eq!(status, StatusCode::OK, "a community of its street");
}

#[tokio::test]
async fn test_urgent_reports_and_the_monthly_report_per_community_and_in_total() {
    let (_dir, state) = county().await;
    let (cookie, _) = sign_in(&state, "xian").await;
    let (_, _, board) = send(&state, get("/reports", &cookie)).await;
    assert_eq!(
        figures(&board, "by-community"),
        [
            row("东风社区", &[2, 1]),
            row("向阳社区", &[1, 0]),
            row("新华社区", &[0, 0]),
            row("合计", &[3, 1]),
        ]
    );
    assert!(board.contains("href=\"/reports?area=ca\""));
    let (_, _, live) = send(&state, get("/reports?fragment=1", &cookie)).await;
    assert_eq!(figures(&live, "by-community").len(), 4);
    let (_, _, ca) = send(&state, get("/reports?area=ca", &cookie)).await;
    let listed: Vec<String> = table(&ca, "reports")
        .into_iter()
        .skip(1)
        .map(|r| r[0].text.clone())
        .collect();
    assert_eq!(
        listed,
        ["东风一网格", "东风二网格"],
        "the community's open reports"
    );
    assert!(
        ca.contains("data-live-src=\"/reports?fragment=1&amp;area=ca\""),
        "{ca}"
    );

    // The monthly report: a row per community and the total; a community's by grid.
    let (_, _, stats) = send(&state, get("/stats", &cookie)).await;
    let visits: Vec<(String, String)> = table(&stats, "stats")
        .into_iter()
        .map(|r| (r[0].text.clone(), r[1].text.clone()))
        .collect();
    assert_eq!(
        visits,
        [
            ("社区".to_string(), "走访次数".to_string()),
            ("东风社区".to_string(), "1".to_string()),
            ("向阳社区".to_string(), "1".to_string()),
            ("新华社区".to_string(), "0".to_string()),
            ("合计".to_string(), "2".to_string()),
        ]
    );
    let (status, _, csv) = send(&state, get("/stats/export.csv?table=stats", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let firsts: Vec<String> = csv
        .lines()
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(
        firsts
            .iter()
            .map(|s| s.trim_start_matches('\u{feff}'))
            .collect::<Vec<_>>(),
        [
            "社区,走访次数",
            "东风社区,1",
            "向阳社区,1",
            "新华社区,0",
            "合计,2"
        ]
    );
    let (_, _, ca) = send(&state, get("/stats?area=ca", &cookie)).await;
    let rows: Vec<(String, String)> = table(&ca, "stats")
        .into_iter()
        .skip(1)
        .map(|r| (r[0].text.clone(), r[1].text.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            ("东风一网格".to_string(), "1".to_string()),
            ("东风二网格".to_string(), "0".to_string()),
            ("合计".to_string(), "1".to_string()),
        ]
    );
    let (_, _, csv) = send(
        &state,
        get("/stats/export.csv?table=stats&area=ca", &cookie),
    )
    .await;
    assert_eq!(csv.lines().count(), 4, "header, two grids, total: {csv}");
}

#[tokio::test]
async fn test_a_community_account_sees_its_grids_as_before() {
    let (_dir, state) = county().await;
    let (cookie, _) = sign_in(&state, "dongfeng").await;
    let (_, _, page) = send(&state, get("/", &cookie)).await;
    let grids: Vec<String> = table(&page, "overview")
        .into_iter()
        .skip(1)
        .map(|r| r[0].text.clone())
        .collect();
    assert_eq!(grids, ["东风一网格", "东风二网格"]);
    assert!(
        !page.contains("by-community") && !page.contains("id=\"trail\""),
        "no roll-up for one community"
    );
    assert!(page.contains("data-live-src=\"/overview/live?\""), "{page}");
    let (_, _, board) = send(&state, get("/reports", &cookie)).await;
    assert!(board.contains("id=\"reports\"") && !board.contains("by-community"));
    let (_, _, stats) = send(&state, get("/stats", &cookie)).await;
    assert_eq!(table(&stats, "stats")[0][0].text, "网格");
    // Its own community is in scope; its street is not.
    let (status, _, _) = send(&state, get("/?area=ca", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, get("/?area=s1", &cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn test_an_admin_at_the_top_sees_every_community_rolled_up() {
    let (_dir, state) = county().await;
    let admin = state
        .accounts
        .add_user(NewUser {
            username: "admin".into(),
            display_name: "管理员".into(),
            role: Role::Admin,
            password_hash: accounts::hash_password("pw-2026").unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(admin.role, Role::Admin);
    let (cookie, _) = sign_in(&state, "admin").await;
    let (_, _, page) = send(&state, get("/", &cookie)).await;
    let rows = figures(&page, "by-community");
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "东风社区",
            "向阳社区",
            "新华社区",
            "和平社区",
            "光明社区",
            "合计"
        ],
        "the communities of no street too"
    );
    assert_eq!(rows[4], row("光明社区", &[1, 0, 0, 0, 0, 0, 0]));
    assert_eq!(rows[5].1[0], "8", "every household");
    let (status, _, _) = send(&state, get("/?area=m2", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
}
