//! The county and street view: the overview's figures per grid counted in the store (a few
//! grouped queries over the index, whatever the number of communities; no document loaded,
//! no list of records), then rolled up by community and street with a total, each community
//! linking to the same page narrowed to it (`?area=`).

use std::collections::BTreeMap;

use chrono::Utc;
use gridsync_core::record::{CaseStatus, Kind, Urgency};
use maud::{Markup, html};

use super::area::Scope;
use super::i18n::Lang;
use super::layout;
use super::{Dashboard, statuses_of};
use crate::AppState;
use crate::storage::{KindFilter, RecordQuery, Result, utc_string};

/// One grid's, community's or street's figures (or their total).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub households: u64,
    pub visits_month: u64,
    pub open_cases: u64,
    pub reports_open: u64,
    /// Open reports past their deadline that the office has not acknowledged yet.
    pub reports_overdue: u64,
    pub tasks_overdue: u64,
    pub low_stock: u64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.households += o.households;
        self.visits_month += o.visits_month;
        self.open_cases += o.open_cases;
        self.reports_open += o.reports_open;
        self.reports_overdue += o.reports_overdue;
        self.tasks_overdue += o.tasks_overdue;
        self.low_stock += o.low_stock;
    }
}

/// The statuses of a report still open, and of one the office has not handled yet (as
/// `board::timing` reads them).
const REPORTS_OPEN: &[&str] = &["draft", "queued", "received", "acknowledged", "escalated"];
const REPORTS_UNHANDLED: &[&str] = &["draft", "queued", "received"];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Open urgent reports per grid, and those past their deadline not acknowledged yet: a report
/// is past it when it was discovered before now less its urgency's time limit.
pub async fn reports_by_grid(
    state: &AppState,
    grids: &[String],
    into: &mut BTreeMap<String, Figures>,
) -> Result<()> {
    let dash = &state.dashboard;
    let storage = state.relay.queries();
    let q = |statuses: &[&str]| RecordQuery {
        grids: grids.to_vec(),
        kinds: KindFilter::one(Kind::Report),
        statuses: strings(statuses),
        ..RecordQuery::default()
    };
    for c in storage.grid_counts(&q(REPORTS_OPEN), &[]).await? {
        into.entry(c.grid_id).or_default().reports_open += c.count;
    }
    let now = Utc::now();
    let cutoffs: Vec<(String, String)> = [Urgency::Critical, Urgency::Urgent, Urgency::Normal]
        .into_iter()
        .map(|u| {
            // The deadline is discovery plus the limit: past it when discovered before now
            // less the limit.
            let limit = dash.rules.deadline(now, u) - now;
            (u.as_str().to_string(), utc_string(now - limit))
        })
        .collect();
    for c in storage.grid_counts(&q(REPORTS_UNHANDLED), &cutoffs).await? {
        into.entry(c.grid_id).or_default().reports_overdue += c.overdue;
    }
    Ok(())
}

/// Every figure of the county table, per grid of `grids` that has any.
pub async fn by_grid(state: &AppState, grids: &[String]) -> Result<BTreeMap<String, Figures>> {
    let dash: &Dashboard = &state.dashboard;
    let storage = state.relay.queries();
    let of = |kind: Kind| RecordQuery {
        grids: grids.to_vec(),
        kinds: KindFilter::one(kind),
        ..RecordQuery::default()
    };
    let count = |q: RecordQuery| async move { storage.grid_counts(&q, &[]).await };
    let mut rows: BTreeMap<String, Figures> = BTreeMap::new();
    for c in count(of(Kind::Household)).await? {
        rows.entry(c.grid_id).or_default().households += c.count;
    }
    let month = RecordQuery {
        from: Some(dash.day_start(dash.month_start())),
        ..of(Kind::Visit)
    };
    for c in count(month).await? {
        rows.entry(c.grid_id).or_default().visits_month += c.count;
    }
    let cases = RecordQuery {
        statuses: CaseStatus::ALL
            .iter()
            .filter(|s| s.is_active())
            .map(|s| s.as_str().to_string())
            .collect(),
        ..of(Kind::Case)
    };
    for c in count(cases).await? {
        rows.entry(c.grid_id).or_default().open_cases += c.count;
    }
    reports_by_grid(state, grids, &mut rows).await?;
    let tasks = RecordQuery {
        statuses: statuses_of(Kind::Task)
            .into_iter()
            .filter(|s| !matches!(*s, "handled" | "verified" | "closed"))
            .map(String::from)
            .collect(),
        due_before: Some(utc_string(Utc::now())),
        ..of(Kind::Task)
    };
    for c in count(tasks).await? {
        rows.entry(c.grid_id).or_default().tasks_overdue += c.count;
    }
    for (grid, n) in storage.low_stock_counts(grids).await? {
        rows.entry(grid).or_default().low_stock += n;
    }
    Ok(rows)
}

/// Figures rolled up: by street, by community (every community in scope, with nothing where
/// nothing was counted) and in total.
pub struct Rolled {
    pub streets: BTreeMap<String, Figures>,
    pub communities: BTreeMap<String, Figures>,
    pub total: Figures,
}

pub fn roll_up(scope: &Scope, by_grid: &BTreeMap<String, Figures>) -> Rolled {
    let mut rolled = Rolled {
        streets: scope
            .streets
            .keys()
            .map(|s| (s.clone(), Figures::default()))
            .collect(),
        communities: scope
            .communities
            .keys()
            .map(|c| (c.clone(), Figures::default()))
            .collect(),
        total: Figures::default(),
    };
    for (grid, f) in by_grid {
        let community = scope.community(grid);
        if let Some(street) = scope.street_of(&community) {
            rolled.streets.entry(street.to_string()).or_default().add(f);
        }
        rolled.communities.entry(community).or_default().add(f);
        rolled.total.add(f);
    }
    rolled
}

/// A column of the county table: its label, its cell's class and its figure.
pub type Column = (&'static str, &'static str, fn(&Figures) -> u64);

pub const OVERVIEW: &[Column] = &[
    ("ov.households", "households", |f| f.households),
    ("ov.visits_month", "visits", |f| f.visits_month),
    ("ov.open_cases", "cases", |f| f.open_cases),
    ("ov.reports_open", "reports-open", |f| f.reports_open),
    ("bd.awaiting", "reports-overdue", |f| f.reports_overdue),
    ("cy.tasks_overdue", "tasks-overdue", |f| f.tasks_overdue),
    ("cy.low_stock", "low-stock", |f| f.low_stock),
];

pub const REPORTS: &[Column] = &[
    ("ov.reports_open", "reports-open", |f| f.reports_open),
    ("bd.awaiting", "reports-overdue", |f| f.reports_overdue),
];

/// The tables by street (when there is more than one) and by community, each with a total
/// row; every street and community links to `page` narrowed to it.
pub fn tables(
    lang: Lang,
    scope: &Scope,
    rolled: &Rolled,
    page: &str,
    columns: &[Column],
) -> Markup {
    let link = |id: &str| format!("{page}?{}", layout::query_string(&[("area", id)]));
    let warn = |class: &str, n: u64| {
        let bad = n > 0 && matches!(class, "reports-overdue" | "tasks-overdue" | "low-stock");
        format!("num {class}{}", if bad { " warn" } else { "" })
    };
    let head = |first: &'static str, second: Option<&'static str>| {
        html! { thead { tr {
            @if let Some(s) = second { th { (lang.t(s)) } }
            th { (lang.t(first)) }
            @for (label, _, _) in columns { th class="num" { (lang.t(label)) } }
        } } }
    };
    let total = html! {
        tr class="total" data-area="total" {
            th colspan=[(!scope.streets.is_empty()).then_some(2)] { (lang.t("total")) }
            @for (_, class, get) in columns { td class=(warn(class, get(&rolled.total))) { (get(&rolled.total)) } }
        }
    };
    html! {
        @if rolled.streets.len() > 1 {
            section {
                h2 { (lang.t("cy.by_street")) }
                table class="grid-table" id="by-street" {
                    (head("cy.street", None))
                    tbody {
                        @for (id, f) in &rolled.streets {
                            tr data-area=(id) {
                                th { a href=(link(id)) { (scope.area_name(id).unwrap_or(id)) } }
                                @for (_, class, get) in columns { td class=(warn(class, get(f))) { (get(f)) } }
                            }
                        }
                    }
                    tfoot { (total.clone()) }
                }
            }
        }
        section {
            h2 { (lang.t("cy.by_community")) }
            table class="grid-table" id="by-community" {
                (head("cy.community", (!scope.streets.is_empty()).then_some("cy.street")))
                tbody {
                    @for (id, f) in &rolled.communities {
                        tr data-area=(id) {
                            @if !scope.streets.is_empty() {
                                td class="street" { (scope.street_of(id).and_then(|s| scope.area_name(s)).unwrap_or("—")) }
                            }
                            th { @match scope.community_name(id) {
                                Some(name) => a href=(link(id)) { (name) },
                                None => (id),
                            } }
                            @for (_, class, get) in columns { td class=(warn(class, get(f))) { (get(f)) } }
                        }
                    }
                }
                tfoot { (total) }
            }
        }
    }
}

/// Where a narrowed page sits: back to the whole scope, the street, the community.
pub fn trail(lang: Lang, scope: &Scope, page: &str) -> Markup {
    let Some(at) = scope.narrowed_to.as_deref() else {
        return html! {};
    };
    let street = scope.narrowed_street();
    let link = |id: &str| format!("{page}?{}", layout::query_string(&[("area", id)]));
    html! {
        p class="trail" id="trail" {
            a href=(page) { (lang.t("cy.all")) }
            @if let Some(s) = street {
                " › "
                @if s == at { strong { (scope.area_name(s).unwrap_or(s)) } }
                @else { a href=(link(s)) { (scope.area_name(s).unwrap_or(s)) } }
            }
            @if street != Some(at) {
                " › " strong { (scope.area_name(at).unwrap_or(at)) }
            }
        }
    }
}
