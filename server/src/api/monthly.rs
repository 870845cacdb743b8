//! The monthly figures as JSON: the same computation as the dashboard's monthly report
//! (`dashboard::stats::figures`), with codes instead of labels.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::NaiveDate;
use gridsync_core::record::{IncidentKind, Kind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ErrorBody, Reader, bad_query};
use crate::AppState;
use crate::dashboard::stats::{self, Row};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthlyParams {
    /// The month, `2026-11`; the current one (in the community's time zone) when left out.
    month: Option<String>,
    /// Only this grid (one the token reads); every grid it reads when left out.
    grid: Option<String>,
}

/// A month's figures, by grid and in all.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MonthlyFigures {
    /// `2026-11`
    pub month: String,
    /// The month's first instant and the next month's, in the community's time zone, as UTC
    /// (RFC 3339): what counts as in the month.
    pub from: String,
    pub to: String,
    pub grids: Vec<GridFigures>,
    /// Every grid's figures added up (households served counted once).
    pub total: Figures,
    /// Volunteer hours by co-building unit, by name.
    pub units: Vec<UnitHours>,
    /// Love-supermarket goods by item, by name.
    pub goods: Vec<GoodsFlow>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GridFigures {
    pub grid_id: String,
    pub grid_name: String,
    pub figures: Figures,
}

/// What happened in a month, as the monthly report 月报 counts it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    /// Door visits that started in the month 走访次数.
    pub visits: u64,
    /// Cases opened 新立个案, by case type.
    pub cases_opened: Counted,
    /// Cases closed 办结个案, by case type.
    pub cases_closed: Counted,
    /// Patrol shifts that started in the month 巡逻次数.
    pub patrols: u64,
    /// Patrol incidents 巡逻事件, by kind.
    pub incidents: Counted,
    /// Urgent reports of the month reported within their deadline 按时报送 ...
    pub reports_on_time: u64,
    /// ... and after it 超时报送.
    pub reports_late: u64,
    /// Activities 活动, by activity type.
    pub activities: Counted,
    /// Volunteer hours the month's activities gave 志愿服务时长.
    pub volunteer_hours: f64,
    /// Love-supermarket movements in 物资入库（次） and out 物资发放（次）.
    pub goods_in_times: u64,
    pub goods_out_times: u64,
    /// Households that received goods 领取物资户数.
    pub households_served: u64,
    /// Tasks due in the month 到期任务, and those handled by their deadline 按期办理.
    pub tasks_due: u64,
    pub tasks_on_time: u64,
}

/// A count and its parts by code (every code of the choice, zeros included).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Counted {
    pub total: u64,
    pub by: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnitHours {
    pub unit_id: String,
    pub name: String,
    pub grid_id: String,
    pub hours_month: f64,
    pub hours_year: f64,
    /// Activities its volunteers took part in this year.
    pub activities_year: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GoodsFlow {
    pub stock_id: String,
    pub item: String,
    pub measure: Option<String>,
    pub grid_id: String,
    /// Quantities in and out in the month, and how many times goods went out.
    pub in_month: f64,
    pub out_month: f64,
    pub out_times: u64,
    /// What is on hand now.
    pub on_hand: f64,
}

/// The monthly figures of the token's grids (or one of them).
#[utoipa::path(
    get,
    path = "/api/v1/stats/monthly",
    operation_id = "monthly_figures",
    tag = "figures",
    params(MonthlyParams),
    responses(
        (status = 200, description = "The month's figures 月度统计", body = MonthlyFigures),
        (status = 400, description = "A parameter is wrong 参数有误", body = ErrorBody),
        (status = 401, description = "No valid token 令牌缺失、无效或已停用", body = ErrorBody),
        (status = 404, description = "The grid is not one the token reads 网格不在令牌范围内", body = ErrorBody),
    ),
)]
pub async fn monthly(
    State(state): State<Arc<AppState>>,
    reader: Reader,
    query: Result<Query<MonthlyParams>, QueryRejection>,
) -> Result<Json<MonthlyFigures>, ApiError> {
    let Query(p) = query.map_err(bad_query)?;
    let month = p.month.unwrap_or_default();
    let is_month =
        month.len() == 7 && NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").is_ok();
    if !month.is_empty() && !is_month {
        return Err(ApiError::BadRequest(format!(
            "月份应写作 2026-11 the month `{month}` should read like 2026-11"
        )));
    }
    let grid = p.grid.unwrap_or_default();
    if !grid.is_empty() && !reader.grids.contains(&grid) {
        return Err(ApiError::NotFound);
    }
    let m = stats::figures_in(&state, reader.grids.clone(), &month, &grid).await?;
    let names: BTreeMap<String, String> = state
        .accounts
        .areas()
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let name = |g: &str| names.get(g).cloned().unwrap_or_else(|| g.to_string());
    Ok(Json(MonthlyFigures {
        month: m.month.format("%Y-%m").to_string(),
        grids: m
            .grids
            .iter()
            .map(|(g, row)| GridFigures {
                grid_id: g.clone(),
                grid_name: name(g),
                figures: figures(row),
            })
            .collect(),
        total: figures(&m.total),
        units: m
            .units
            .iter()
            .map(|(u, given)| UnitHours {
                unit_id: u.row.id.clone(),
                name: u.row.title.clone(),
                grid_id: u.row.grid_id.clone(),
                hours_month: given.month,
                hours_year: given.year,
                activities_year: given.activities,
            })
            .collect(),
        goods: m
            .goods
            .iter()
            .map(|(i, f)| GoodsFlow {
                stock_id: i.row.id.clone(),
                item: i.row.title.clone(),
                measure: i.facts.measure.clone(),
                grid_id: i.row.grid_id.clone(),
                in_month: f.goods_in,
                out_month: f.goods_out,
                out_times: f.outs,
                on_hand: i.facts.on_hand(),
            })
            .collect(),
        from: m.from,
        to: m.to,
    }))
}

fn figures(r: &Row) -> Figures {
    let subtypes = |kind: Kind| {
        kind.spec()
            .subtype
            .and_then(|f| kind.spec().choices(f))
            .map(|set| set.codes().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    Figures {
        visits: r.visits,
        cases_opened: counted(&r.opened, subtypes(Kind::Case)),
        cases_closed: counted(&r.closed, subtypes(Kind::Case)),
        patrols: r.patrols,
        incidents: counted(&r.incidents, IncidentKind::CHOICES.codes().collect()),
        reports_on_time: r.on_time,
        reports_late: r.late,
        activities: counted(&r.activities, subtypes(Kind::Activity)),
        volunteer_hours: r.hours,
        goods_in_times: r.goods_ins,
        goods_out_times: r.goods_outs,
        households_served: r.households_served.len() as u64,
        tasks_due: r.tasks_due,
        tasks_on_time: r.tasks_on_time,
    }
}

fn counted(counts: &BTreeMap<String, u64>, codes: Vec<&str>) -> Counted {
    let mut by: BTreeMap<String, u64> = codes.into_iter().map(|c| (c.to_string(), 0)).collect();
    for (code, n) in counts {
        *by.entry(code.clone()).or_default() += n;
    }
    Counted {
        total: counts.values().sum(),
        by,
    }
}
