//! 爱心超市: every stock item with what it has on hand (goods in minus goods out, as devices
//! compute it), what came in and went out in the month, the last six months by item, and who
//! received what. From the facts beside the index: no document is loaded. An item at or below
//! its low-stock level is marked here and on the overview; one below zero (concurrent hand-outs
//! that together overdrew it) is marked for the office to settle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use gridsync_core::record::Kind;
use maud::{Markup, html};

use super::auth::Staff;
use super::co::{CoParams, Period, records_of};
use super::layout;
use super::tasks::one_decimal;
use super::{Dashboard, Fail};
use crate::AppState;
use crate::storage::{ListedRecord, RecordQuery};

/// In and out of one item over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flow {
    pub goods_in: f64,
    pub goods_out: f64,
    /// Movements in and out.
    pub ins: u64,
    pub outs: u64,
}

/// What came in and went out of `item` between two instants (UTC strings).
pub fn flow(item: &ListedRecord, from: &str, to: &str) -> Flow {
    let mut f = Flow::default();
    for m in &item.facts.movements {
        if !m.at.as_deref().is_some_and(|t| t >= from && t < to) {
            continue;
        }
        match m.kind.as_str() {
            "in" => {
                f.goods_in += m.quantity;
                f.ins += 1;
            }
            "out" => {
                f.goods_out += m.quantity;
                f.outs += 1;
            }
            _ => {}
        }
    }
    f
}

/// At or below its low-stock level.
pub fn is_low(item: &ListedRecord) -> bool {
    item.facts
        .low_at
        .is_some_and(|low| item.facts.on_hand() <= low)
}

/// The items at or below their low-stock level, for the overview.
pub fn low_stock(lang: super::Lang, items: &[ListedRecord]) -> Markup {
    let low: Vec<&ListedRecord> = items.iter().filter(|i| is_low(i)).collect();
    html! {
        @if !low.is_empty() {
            section {
                h2 { a href="/supermarket" { (lang.t("sm.low")) } }
                table class="matrix" id="low-stock" {
                    thead { tr { th { (lang.field(Kind::Stock, "item")) } th class="num" { (lang.t("sm.on_hand")) } th class="num" { (lang.field(Kind::Stock, "low_at")) } } }
                    tbody { @for i in &low {
                        tr data-id=(i.row.id) {
                            th { a href={ "/records/" (i.row.id) } { (i.row.title) } }
                            td class="num bad" { (one_decimal(i.facts.on_hand())) " " (i.facts.measure.clone().unwrap_or_default()) }
                            td class="num" { (i.facts.low_at.map(one_decimal).unwrap_or_default()) }
                        }
                    } }
                }
            }
        }
    }
}

/// The first days of the six months ending with the period's month.
fn months(dash: &Dashboard, p: &Period) -> Vec<(String, String, String)> {
    (0..6)
        .rev()
        .filter_map(|back| {
            let start = p.month.checked_sub_months(chrono::Months::new(back))?;
            let end = start.checked_add_months(chrono::Months::new(1))?;
            Some((
                start.format("%Y-%m").to_string(),
                dash.day_start(start),
                dash.day_start(end),
            ))
        })
        .collect()
}

/// Months newest first, items by name within a month.
fn newest_first<K: Ord, V>(m: &BTreeMap<(K, K), V>) -> Vec<(&(K, K), &V)> {
    let mut rows: Vec<(&(K, K), &V)> = m.iter().collect();
    rows.sort_by(|a, b| b.0.0.cmp(&a.0.0).then(a.0.1.cmp(&b.0.1)));
    rows
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<CoParams>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let dash = &state.dashboard;
    let period = Period::of(dash, &p.month);
    let mut items =
        records_of(&state, &staff, &p.grid, Kind::Stock, RecordQuery::default()).await?;
    items.sort_by(|a, b| a.row.title.cmp(&b.row.title));
    // Who received what this month, with the households by name (from the index).
    let mut given: Vec<(&ListedRecord, &crate::storage::MovementFact)> = items
        .iter()
        .flat_map(|i| i.facts.movements.iter().map(move |m| (i, m)))
        .filter(|(_, m)| m.kind == "out" && period.in_month(m.at.as_deref()))
        .collect();
    given.sort_by(|a, b| b.1.at.cmp(&a.1.at));
    let ids: Vec<String> = given
        .iter()
        .filter_map(|(_, m)| m.household_id.clone())
        .collect();
    let households: HashMap<String, String> = if ids.is_empty() {
        HashMap::new()
    } else {
        records_of(
            &state,
            &staff,
            "",
            Kind::Household,
            RecordQuery {
                ids,
                ..RecordQuery::default()
            },
        )
        .await?
        .into_iter()
        .map(|h| (h.row.id, h.row.title))
        .collect()
    };
    let months = months(dash, &period);
    let mut by_month: BTreeMap<(String, String), (Flow, String)> = BTreeMap::new();
    for (label, from, to) in &months {
        for i in &items {
            let f = flow(i, from, to);
            if f.ins + f.outs > 0 {
                by_month.insert(
                    (label.clone(), i.row.title.clone()),
                    (f, i.facts.measure.clone().unwrap_or_default()),
                );
            }
        }
    }
    let body = html! {
        form method="get" action="/supermarket" class="filters" {
            label { (lang.t("st.month")) input type="month" name="month" value=(period.label()); }
            label { (lang.t("grid")) (layout::select("grid", lang.t("all_grids"), &staff.grid_options(), &p.grid)) }
            button type="submit" { (lang.t("st.show")) }
        }
        h2 { (lang.t("sm.stock")) }
        @if items.is_empty() { p class="muted" { (lang.t("none")) } } @else {
        table class="list" id="stock" {
            thead { tr {
                th { (lang.field(Kind::Stock, "item")) } th { (lang.field(Kind::Stock, "measure")) } th { (lang.t("grid")) }
                th class="num" { (lang.t("sm.in_month")) } th class="num" { (lang.t("sm.out_month")) }
                th class="num" { (lang.t("sm.on_hand")) } th class="num" { (lang.field(Kind::Stock, "low_at")) }
            } }
            tbody { @for i in &items {
                @let f = flow(i, &period.from, &period.to);
                @let on_hand = i.facts.on_hand();
                tr data-id=(i.row.id) class=[is_low(i).then_some("low")] {
                    td { a href={ "/records/" (i.row.id) } { (i.row.title) } }
                    td { (i.facts.measure.clone().unwrap_or_default()) }
                    td { (staff.grid_name(&i.row.grid_id)) }
                    td class="num in" { (one_decimal(f.goods_in)) }
                    td class="num out" { (one_decimal(f.goods_out)) }
                    td class={ "num on-hand" @if on_hand < 0.0 || is_low(i) { " bad" } } {
                        (one_decimal(on_hand))
                        @if on_hand < 0.0 { " " span class="tag bad" { (lang.t("sm.overdrawn")) } }
                        @else if is_low(i) { " " span class="tag warn" { (lang.t("sm.low_tag")) } }
                    }
                    td class="num" { (i.facts.low_at.map(one_decimal).unwrap_or_default()) }
                }
            } }
        }
        }
        div class="cols" {
            section {
                h2 { (lang.t("sm.by_month")) }
                @if by_month.is_empty() { p class="muted" { (lang.t("none")) } } @else {
                table class="list" id="stock-months" {
                    thead { tr {
                        th { (lang.t("st.month")) } th { (lang.field(Kind::Stock, "item")) }
                        th class="num" { (lang.label("movement", "in")) } th class="num" { (lang.label("movement", "out")) }
                        th { (lang.field(Kind::Stock, "measure")) }
                    } }
                    tbody { @for ((month, item), (f, measure)) in newest_first(&by_month) {
                        tr { td { (month) } td { (item) } td class="num" { (one_decimal(f.goods_in)) } td class="num" { (one_decimal(f.goods_out)) } td { (measure) } }
                    } }
                }
                }
            }
            section {
                h2 { (lang.t("sm.received")) }
                @if given.is_empty() { p class="muted" { (lang.t("none")) } } @else {
                table class="list" id="recipients" {
                    thead { tr {
                        th { (lang.t("date")) } th { (lang.field(Kind::Stock, "item")) } th class="num" { (lang.field(Kind::Stock, "movements[].quantity")) }
                        th { (lang.field(Kind::Stock, "movements[].household_id")) }
                    } }
                    tbody { @for (i, m) in &given {
                        tr {
                            td { (m.at.as_deref().map(|t| dash.show_time(t)).unwrap_or_default()) }
                            td { (i.row.title) }
                            td class="num" { (one_decimal(m.quantity)) " " (i.facts.measure.clone().unwrap_or_default()) }
                            td { @match &m.household_id {
                                Some(h) => a href={ "/records/" (h) } { (households.get(h).cloned().unwrap_or_else(|| h.clone())) },
                                None => "—",
                            } @if let Some(c) = &m.case_id { " · " a href={ "/records/" (c) } { (lang.label("kind", "case")) } } }
                        }
                    } }
                }
                }
            }
        }
    };
    let title = format!("{} {}", lang.t("nav.supermarket"), period.label());
    Ok(layout::page(&staff, "supermarket", &title, body).into_response())
}
