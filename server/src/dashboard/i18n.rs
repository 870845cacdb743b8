//! Every word the dashboard shows, in Chinese (the default) and English.
//!
//! UI text is looked up by key in [`TEXT`]; record values (statuses, types, categories) by
//! `group.value` in [`VALUES`]. A value nobody translated yet is shown as it is stored, never
//! dropped. The unit tests check that every key the pages use exists in both languages.

mod values;

use gridsync_core::record::ValidationError;
pub use values::VALUES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn from_cookie(value: Option<&str>) -> Lang {
        match value {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// A UI string. Unknown keys come back as the key, which the tests forbid.
    pub fn t(self, key: &'static str) -> &'static str {
        lookup(TEXT, key).map_or(key, |(zh, en)| self.pick(zh, en))
    }

    /// A stored value's label, e.g. `label("case_status", "in_progress")` → 办理中.
    pub fn label(self, group: &str, value: &str) -> String {
        let key = format!("{group}.{value}");
        VALUES.iter().find(|(k, _, _)| *k == key).map_or_else(
            || value.to_string(),
            |(_, zh, en)| self.pick(zh, en).to_string(),
        )
    }

    fn pick(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// The colon after a label: full-width in Chinese text.
    pub fn colon(self) -> &'static str {
        self.pick("：", ": ")
    }

    /// What separates the items of a list in running text: 、 in Chinese, a comma in English.
    pub fn list_sep(self) -> &'static str {
        self.pick("、", ", ")
    }

    /// The labels of some values of a group, as running text.
    pub fn labels(self, group: &str, values: &[&str]) -> String {
        values
            .iter()
            .map(|v| self.label(group, v))
            .collect::<Vec<_>>()
            .join(self.list_sep())
    }

    /// A value that is not one of a field's choices, naming the field and the choices by label.
    pub fn not_a_choice(self, field: &str, value: &str, group: &str, values: &[&str]) -> String {
        let name = self.label("field", field);
        let allowed = self.labels(group, values);
        match self {
            Lang::Zh => format!("「{name}」不能填「{value}」，只能选：{allowed}"),
            Lang::En => format!("“{value}” is not a valid {name}; choose one of: {allowed}"),
        }
    }

    /// A validation error in the user's language.
    pub fn validation(self, e: &ValidationError) -> String {
        let zh = self == Lang::Zh;
        if let ValidationError::Field(m) = e
            && let Some((value, expected)) = unknown_variant(m)
            && let Some((field, group)) = field_of_values(&expected)
        {
            return self.not_a_choice(field, value, group, &expected);
        }
        match e {
            ValidationError::MissingField(f) if zh => {
                format!("缺少必填项：「{}」", self.label("field", f))
            }
            ValidationError::MissingField(f) => {
                format!("Required field missing: {}", self.label("field", f))
            }
            ValidationError::InvalidTransition { kind, from, to, .. } => {
                let group = if kind.as_str() == "case" {
                    "case_status"
                } else {
                    "report_status"
                };
                let (from, to) = (self.label(group, from), self.label(group, to));
                if zh {
                    format!("状态不能从「{from}」改为「{to}」")
                } else {
                    format!("The status cannot go from “{from}” to “{to}”")
                }
            }
            ValidationError::UnknownHousehold(h) if zh => format!("找不到户 {h}"),
            ValidationError::UnknownHousehold(h) => format!("Unknown household {h}"),
            ValidationError::AppendOnly(f) if zh => {
                format!("「{}」只能追加，不能修改已有条目", self.label("field", f))
            }
            ValidationError::AppendOnly(f) => format!(
                "{} can only be added to; existing entries cannot change",
                self.label("field", f)
            ),
            ValidationError::TooLong { field, max, .. } if zh => {
                format!("「{}」太长：最多 {max} 个字", self.label("field", field))
            }
            ValidationError::OutOfRange { field, value, .. } if zh => {
                format!(
                    "「{}」的值 {value} 不在允许的范围内（日期、时间或位置有误）",
                    self.label("field", field)
                )
            }
            ValidationError::NotTheAuthor { named, author, .. } if zh => {
                format!("新增条目的记录人应为 {author}，而不是 {named}")
            }
            ValidationError::Field(m) if zh => format!("填写有误：{m}"),
            ValidationError::Field(m) => format!("Invalid value: {m}"),
            other if zh => format!("记录不合规：{other}"),
            other => other.to_string(),
        }
    }
}

/// serde's "unknown variant `x`, expected one of `a`, `b`" as (x, [a, b]).
fn unknown_variant(m: &str) -> Option<(&str, Vec<&str>)> {
    let rest = m.strip_prefix("unknown variant `")?;
    let (value, rest) = rest.split_once('`')?;
    let (_, expected) = rest.split_once("expected ")?;
    let values: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    (!values.is_empty()).then_some((value, values))
}

/// The field and label group whose choices are exactly these values (a case's status, a
/// report's category, ...), as validation names them.
fn field_of_values(values: &[&str]) -> Option<(&'static str, &'static str)> {
    const FIELDS: [(&str, &str); 13] = [
        ("status", "case_status"),
        ("status", "report_status"),
        ("outcome", "visit_status"),
        ("case_type", "case_type"),
        ("category", "report_type"),
        ("visit_type", "visit_type"),
        ("household_type", "household_type"),
        ("urgency", "urgency"),
        ("visit_class", "visit_class"),
        ("risk_level", "level"),
        ("source", "case_source"),
        ("kind", "action"),
        ("kind", "incident"),
    ];
    FIELDS.into_iter().find(|(_, group)| {
        let labelled = VALUES
            .iter()
            .filter(|(k, _, _)| k.strip_prefix(group).is_some_and(|r| r.starts_with('.')))
            .count();
        labelled == values.len()
            && values
                .iter()
                .all(|v| lookup(VALUES, &format!("{group}.{v}")).is_some())
    })
}

fn lookup(
    table: &'static [(&'static str, &'static str, &'static str)],
    key: &str,
) -> Option<(&'static str, &'static str)> {
    table
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, zh, en)| (*zh, *en))
}

/// UI strings: (key, 中文, English).
pub const TEXT: &[(&str, &str, &str)] = &[
    (
        "app",
        "网格同步 · 社区办公室",
        "gridsync · Community office",
    ),
    ("nav.overview", "工作概览", "Overview"),
    ("nav.records", "记录", "Records"),
    ("nav.review", "审核队列", "Review queue"),
    ("nav.reports", "社情民意", "Urgent reports"),
    ("nav.stats", "月度统计", "Monthly statistics"),
    ("logout", "退出登录", "Sign out"),
    ("switch_lang", "English", "中文"),
    ("login.title", "工作人员登录", "Staff sign-in"),
    ("login.username", "用户名", "Username"),
    ("login.password", "密码", "Password"),
    ("login.submit", "登录", "Sign in"),
    (
        "login.hint",
        "仅限社区办公室工作人员和管理员",
        "Community office staff and admins only",
    ),
    (
        "err.credentials",
        "用户名或密码错误",
        "Wrong username or password",
    ),
    (
        "err.role",
        "此账号不能使用办公室系统，请用手机应用",
        "This account cannot use the office dashboard; use the phone app",
    ),
    (
        "err.throttled",
        "尝试次数过多，请稍后再试",
        "Too many failed attempts; try again later",
    ),
    (
        "err.inactive",
        "该账号已停用",
        "This account is deactivated",
    ),
    (
        "err.csrf",
        "页面已过期，请刷新后重试",
        "This page expired; reload it and try again",
    ),
    (
        "err.not_found",
        "找不到该记录，或不在您的管辖范围内",
        "No such record, or it is outside your area",
    ),
    (
        "err.storage",
        "服务器存储出错，请稍后再试",
        "The server could not read its store; try again later",
    ),
    (
        "err.damaged",
        "该记录在服务器上的数据已损坏，无法打开；请联系管理员",
        "This record's data on the server is damaged and cannot be opened; ask an administrator",
    ),
    (
        "err.refused",
        "服务器拒绝了这次修改",
        "The server refused this change",
    ),
    (
        "err.no_conflict",
        "该字段已没有冲突，可能已被他人处理",
        "This field has no conflict any more; someone may have settled it",
    ),
    ("err.bad_request", "请求无效", "Invalid request"),
    ("err.value", "请填写或选择新值", "Enter or choose a value"),
    (
        "saved",
        "已保存，并将同步到网格员的设备",
        "Saved; it will sync to the workers' devices",
    ),
    ("all", "全部", "All"),
    ("all_grids", "全部网格", "All grids"),
    ("grid", "网格", "Grid"),
    ("kind", "类别", "Kind"),
    ("type", "类型", "Type"),
    ("status", "状态", "Status"),
    ("worker", "网格员/负责人", "Worker"),
    ("from", "开始日期", "From"),
    ("to", "结束日期", "To"),
    ("search", "搜索", "Search"),
    (
        "search.placeholder",
        "姓名、地址、描述或编号",
        "Name, address, description or id",
    ),
    ("filter", "筛选", "Filter"),
    ("reset", "清除", "Clear"),
    ("export.csv", "导出 CSV", "Export CSV"),
    ("export.xlsx", "导出 Excel", "Export Excel"),
    ("title", "标题", "Title"),
    ("date", "日期", "Date"),
    ("updated", "更新时间", "Updated"),
    ("received", "服务器接收", "Received"),
    ("flags", "标记", "Flags"),
    ("flag.conflict", "字段冲突", "Conflict"),
    ("flag.parallel", "并行编辑", "Parallel edit"),
    ("rows", "条", "rows"),
    ("prev", "上一页", "Previous"),
    ("next", "下一页", "Next"),
    ("none", "暂无记录", "No records"),
    ("live", "实时更新", "Live"),
    ("live.updated", "已更新", "Updated"),
    ("ov.households", "户数", "Households"),
    ("ov.visits_month", "本月走访", "Visits this month"),
    ("ov.overdue", "逾期未走访户", "Overdue for a visit"),
    ("ov.open_cases", "在办个案", "Open cases"),
    ("ov.patrols_week", "本周巡逻", "Patrols this week"),
    ("ov.incidents_week", "本周事件", "Incidents this week"),
    ("ov.reports_open", "待处理社情民意", "Open urgent reports"),
    ("ov.reports_late", "超时报送", "Reported late"),
    (
        "ov.cases_by",
        "在办个案（按类型和状态）",
        "Open cases by type and status",
    ),
    (
        "ov.incidents_by",
        "本周巡逻事件（按类别）",
        "Patrol incidents this week by kind",
    ),
    (
        "ov.urgent",
        "社情民意限时报送",
        "Urgent reports and deadlines",
    ),
    ("ov.review", "待审核记录", "Records awaiting review"),
    ("total", "合计", "Total"),
    ("rec.fields", "记录内容", "Fields"),
    ("rec.history", "修改历史", "History"),
    (
        "rec.history_hint",
        "来自 Automerge 修改记录：谁、何时、在哪台设备上改了哪些字段",
        "From the Automerge history: who changed which field, when, on which device",
    ),
    ("rec.author", "修改人", "Author"),
    ("rec.device", "设备", "Device"),
    ("rec.device_time", "设备时间", "Device time"),
    ("rec.changed", "修改的字段", "Fields changed"),
    ("rec.created", "创建记录", "Created the record"),
    ("rec.concurrent", "并行", "parallel"),
    ("rec.actions", "办公室操作", "Office actions"),
    (
        "rec.to_review",
        "此记录有待审核的冲突",
        "This record has conflicts awaiting review",
    ),
    ("act.assign", "指派负责人", "Assign"),
    ("act.responsible", "负责人", "Responsible"),
    ("act.move", "变更状态", "Change status"),
    ("act.add_action", "添加帮扶措施", "Add an action"),
    ("act.description", "说明", "Description"),
    ("act.quantity", "数量", "Quantity"),
    ("act.value", "价值（元）", "Value (yuan)"),
    ("act.recipient", "接收人", "Recipient"),
    ("act.acknowledge", "确认接收", "Acknowledge"),
    ("act.escalate", "上报街道", "Escalate"),
    ("act.close", "办结", "Close"),
    ("act.follow_up", "续报", "Follow-up"),
    ("act.submit", "提交", "Submit"),
    (
        "rv.hint",
        "两人离线同时修改了同一记录。并行编辑不同字段已自动合并，请核对；同一字段的不同值需选定一个。",
        "Two people edited the same record offline. Edits of different fields merged by themselves: check them. Different values of the same field: choose one.",
    ),
    ("rv.field", "字段", "Field"),
    ("rv.value", "值", "Value"),
    ("rv.action", "操作", "Action"),
    ("rv.choose", "采用此值", "Use this value"),
    ("rv.new_value", "或写入新值", "Or write a new value"),
    ("rv.pick", "请选择", "Choose…"),
    ("rv.heading", "审核", "Review"),
    (
        "rv.merged",
        "合并后的当前内容（并行修改过的字段）",
        "The record now, merged (fields the parallel edits changed)",
    ),
    ("rv.open_record", "查看完整记录", "Open the full record"),
    ("rv.write", "写入", "Write"),
    ("rv.shown", "当前显示", "shown now"),
    (
        "rv.parallel",
        "并行编辑：不同人员同时修改了此记录（已自动合并）",
        "Parallel edit: several people changed this record at once (merged)",
    ),
    ("rv.done", "标记为已审核", "Mark as reviewed"),
    ("rv.empty", "没有待审核的记录", "Nothing to review"),
    ("rv.reason", "原因", "Reason"),
    ("rv.open", "审核", "Review"),
    ("bd.rules", "报送时限", "Deadlines"),
    ("bd.discovered", "发现时间", "Discovered"),
    ("bd.deadline", "报送时限", "Deadline"),
    ("bd.left", "剩余时间", "Time left"),
    (
        "bd.awaiting",
        "过时限待确认",
        "Past deadline, not acknowledged",
    ),
    ("bd.reported", "报送情况", "Reported"),
    ("bd.on_time", "按时报送", "On time"),
    ("bd.late", "超时报送", "Late"),
    ("bd.phoned", "电话报送", "phoned in"),
    ("bd.handled", "已处理", "Handled"),
    ("bd.minutes", "分钟", "min"),
    ("st.month", "月份", "Month"),
    ("st.visits", "走访次数", "Visits"),
    ("st.cases_opened", "新立个案", "Cases opened"),
    ("st.cases_closed", "办结个案", "Cases closed"),
    ("st.patrols", "巡逻次数", "Patrols"),
    ("st.incidents", "巡逻事件", "Incidents"),
    ("st.reports_on_time", "社情民意按时报送", "Reports on time"),
    ("st.reports_late", "社情民意超时报送", "Reports late"),
    ("st.by_type", "按类型", "By type"),
    ("st.by_kind", "按类别", "By kind"),
    ("st.show", "查看", "Show"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use gridsync_core::record::Kind;

    #[test]
    fn test_every_text_has_both_languages_and_no_duplicates() {
        for table in [TEXT, VALUES] {
            let mut keys: Vec<&str> = table.iter().map(|(k, _, _)| *k).collect();
            keys.sort();
            let before = keys.len();
            keys.dedup();
            assert_eq!(before, keys.len(), "duplicate keys");
            for (k, zh, en) in table {
                assert!(!zh.is_empty() && !en.is_empty(), "{k} lacks a translation");
            }
        }
    }

    #[test]
    fn test_every_key_used_in_the_pages_exists() {
        let sources = [
            include_str!("../dashboard.rs"),
            include_str!("auth.rs"),
            include_str!("layout.rs"),
            include_str!("overview.rs"),
            include_str!("lists.rs"),
            include_str!("record.rs"),
            include_str!("review.rs"),
            include_str!("board.rs"),
            include_str!("stats.rs"),
            include_str!("office.rs"),
        ];
        for src in sources {
            for part in src.split(".t(\"").skip(1) {
                let key = &part[..part.find('"').unwrap_or(0)];
                assert!(lookup(TEXT, key).is_some(), "missing translation for {key}");
            }
        }
    }

    struct NoHouseholds;

    impl gridsync_core::record::ValidationContext for NoHouseholds {
        fn household_exists(&self, _: &str) -> bool {
            false
        }
    }

    #[test]
    fn test_an_unknown_enum_value_is_explained_by_field_and_choices() {
        let mut case = serde_json::json!({
            "case_type": "low_income", "subject_name": "张三", "status": "帮扶中x"
        });
        let fields = case.as_object_mut().unwrap();
        let e =
            gridsync_core::record::validate(Kind::Case, fields, None, &NoHouseholds).unwrap_err();
        assert_eq!(
            Lang::Zh.validation(&e),
            "「状态」不能填「帮扶中x」，只能选：草稿、已立案、评估中、帮扶中、待审核、已办结、已转介、已暂停、重新开启"
        );
        assert_eq!(
            Lang::En.validation(&e),
            "“帮扶中x” is not a valid Status; choose one of: Draft, Open, Assessing, In progress, \
             Pending review, Closed, Referred, Suspended, Reopened"
        );
    }

    /// Each choice the review page offers is a value the record accepts, with labels in both
    /// languages.
    #[test]
    fn test_every_choice_is_a_valid_value_with_labels() {
        use gridsync_core::record as r;
        use serde_json::Value;
        fn ok<T: serde::de::DeserializeOwned>(v: &str) -> bool {
            serde_json::from_value::<T>(Value::from(v)).is_ok()
        }
        type Accepts = fn(&str) -> bool;
        let fields: [(Kind, &str, Accepts); 11] = [
            (Kind::Case, "status", ok::<r::CaseStatus>),
            (Kind::Report, "status", ok::<r::ReportStatus>),
            (Kind::Visit, "outcome", ok::<r::VisitOutcome>),
            (Kind::Case, "case_type", ok::<r::CaseType>),
            (Kind::Report, "category", ok::<r::ReportCategory>),
            (Kind::Visit, "visit_type", ok::<r::VisitType>),
            (Kind::Household, "household_type", ok::<r::HouseholdType>),
            (Kind::Report, "urgency", ok::<r::Urgency>),
            (Kind::Household, "visit_class", ok::<r::VisitClass>),
            (Kind::Household, "risk_level", ok::<r::Level>),
            (Kind::Case, "source", ok::<r::CaseSource>),
        ];
        for (kind, field, valid) in fields {
            let (group, values) = super::super::choices(kind, field).unwrap();
            assert!(
                lookup(VALUES, &format!("field.{field}")).is_some(),
                "{field}"
            );
            for v in values {
                assert!(valid(v), "{kind:?}.{field} = {v}");
                assert!(
                    lookup(VALUES, &format!("{group}.{v}")).is_some(),
                    "{group}.{v}"
                );
            }
        }
    }

    /// Every detail of a list entry or a nested record that a page shows as running text (see
    /// `record::readable`) is named by a label in both languages, and so is every coded value
    /// in it: no English key or stored code reaches the page. The structs are written out in
    /// full, so a new field in client-core stops this test from compiling until it is labelled.
    #[test]
    fn test_every_detail_of_list_entries_and_nested_records_has_a_label() {
        use super::super::record::{TEXT_KEYS, TIME_KEYS, entry_group};
        use gridsync_core::record as r;
        use serde_json::{Value, to_value};
        let at: chrono::DateTime<chrono::Utc> = "2026-11-28T02:00:00Z".parse().unwrap();
        let entries: Vec<(&str, Value)> = vec![
            (
                "actions",
                to_value(r::CaseAction {
                    kind: r::ActionKind::Goods,
                    at,
                    by: Some("wang".into()),
                    description: "米面油".into(),
                    quantity: Some(2.0),
                    value_yuan: Some(150.0),
                    evidence: vec!["p1".into()],
                    recipient: Some("张桂兰".into()),
                })
                .unwrap(),
            ),
            (
                "incidents",
                to_value(r::Incident {
                    kind: r::IncidentKind::Fire,
                    occurred_at: at,
                    place: "5栋".into(),
                    description: "堆放杂物".into(),
                    action: r::IncidentAction::Called110,
                    severity: Some(r::Level::High),
                    photos: vec!["p1".into()],
                    linked_report: Some("r1".into()),
                })
                .unwrap(),
            ),
            (
                "issues",
                to_value(r::VisitIssue {
                    category: "居住安全".into(),
                    description: "电热毯老化".into(),
                    handling: r::Handling::TakenBack,
                })
                .unwrap(),
            ),
            (
                "follow_ups",
                to_value(r::FollowUp {
                    at,
                    by: Some("wang".into()),
                    text: "已处理".into(),
                })
                .unwrap(),
            ),
            (
                "checkpoints",
                to_value(r::Checkpoint {
                    name: "东门".into(),
                    passed_at: at,
                })
                .unwrap(),
            ),
            (
                "needs",
                to_value(r::Need {
                    description: "申请低保".into(),
                    priority: Some(r::Level::Medium),
                })
                .unwrap(),
            ),
            (
                "residents",
                to_value(r::Resident {
                    name: "张桂兰".into(),
                    gender: Some("女".into()),
                    birth_date: "1948-03-07".parse().ok(),
                    id_number: Some("420102194803071226".into()),
                    relation: Some("户主".into()),
                    phone: Some("138".into()),
                    employment: Some("退休".into()),
                    disability_type: Some("肢体".into()),
                    disability_grade: Some("二级".into()),
                    health: Some("高血压".into()),
                    welfare_status: Some("低保".into()),
                    presence: Some(r::Presence::Deceased),
                })
                .unwrap(),
            ),
            (
                "address",
                to_value(r::Address {
                    estate: Some("和平花园".into()),
                    building: Some("3栋".into()),
                    unit: Some("2单元".into()),
                    floor: Some("4".into()),
                    door: Some("402".into()),
                    village_group: Some("一组".into()),
                    lane: Some("东巷".into()),
                    text: Some("门口有树".into()),
                })
                .unwrap(),
            ),
            (
                "gps",
                to_value(r::Gps {
                    lat: 30.6,
                    lon: 114.3,
                    accuracy_m: Some(5.0),
                })
                .unwrap(),
            ),
        ];
        for (field, entry) in &entries {
            for (key, value) in entry.as_object().unwrap() {
                let read_as_is = TIME_KEYS.contains(&key.as_str())
                    || TEXT_KEYS.contains(&key.as_str())
                    || key == "by";
                assert!(
                    read_as_is
                        || entry_group(field, key).is_some()
                        || lookup(VALUES, &format!("field.{key}")).is_some(),
                    "{field}: no label for {key}"
                );
                if let (Some(group), Some(code)) = (entry_group(field, key), value.as_str()) {
                    assert!(
                        lookup(VALUES, &format!("{group}.{code}")).is_some(),
                        "{group}.{code}"
                    );
                }
            }
        }
        // Every coded value those entries may hold, not only the ones above.
        let coded: Vec<(&str, &str, Vec<Value>)> = vec![
            (
                "actions",
                "kind",
                [
                    r::ActionKind::Visit,
                    r::ActionKind::Goods,
                    r::ActionKind::BenefitApplication,
                    r::ActionKind::Referral,
                    r::ActionKind::JobMatched,
                    r::ActionKind::SupermarketRedemption,
                    r::ActionKind::Note,
                ]
                .iter()
                .map(|v| to_value(v).unwrap())
                .collect(),
            ),
            (
                "incidents",
                "kind",
                [
                    r::IncidentKind::PublicOrder,
                    r::IncidentKind::Fire,
                    r::IncidentKind::Environment,
                    r::IncidentKind::Facilities,
                    r::IncidentKind::Dispute,
                    r::IncidentKind::SuspiciousPerson,
                ]
                .iter()
                .map(|v| to_value(v).unwrap())
                .collect(),
            ),
            (
                "incidents",
                "action",
                [
                    r::IncidentAction::Handled,
                    r::IncidentAction::Reported,
                    r::IncidentAction::Called110,
                ]
                .iter()
                .map(|v| to_value(v).unwrap())
                .collect(),
            ),
            (
                "issues",
                "handling",
                [
                    r::Handling::SolvedOnSpot,
                    r::Handling::TakenBack,
                    r::Handling::ReportedAtOnce,
                ]
                .iter()
                .map(|v| to_value(v).unwrap())
                .collect(),
            ),
            (
                "residents",
                "presence",
                [
                    r::Presence::Present,
                    r::Presence::Moved,
                    r::Presence::Deceased,
                ]
                .iter()
                .map(|v| to_value(v).unwrap())
                .collect(),
            ),
            (
                "incidents",
                "severity",
                [r::Level::Low, r::Level::Medium, r::Level::High]
                    .iter()
                    .map(|v| to_value(v).unwrap())
                    .collect(),
            ),
        ];
        for (field, key, values) in coded {
            let group = entry_group(field, key).unwrap_or_else(|| panic!("{field}.{key}"));
            for v in values {
                let code = v.as_str().unwrap();
                assert!(
                    lookup(VALUES, &format!("{group}.{code}")).is_some(),
                    "{group}.{code}"
                );
            }
        }
    }

    /// Every top-level field a record page may show, the replica's own (`device_id`,
    /// `updated_at`, ...) included, is named by a label in both languages. As above, the
    /// structs are written out in full, so a new field stops this test from compiling until it
    /// is labelled.
    #[test]
    fn test_every_field_of_every_kind_has_a_label() {
        use gridsync_core::record as r;
        use serde_json::to_value;
        let at: chrono::DateTime<chrono::Utc> = "2026-11-28T02:00:00Z".parse().unwrap();
        let address = r::Address {
            estate: None,
            building: None,
            unit: None,
            floor: None,
            door: None,
            village_group: None,
            lane: None,
            text: None,
        };
        let records = [
            to_value(r::Household {
                head_name: "张桂兰".into(),
                address,
                gps: None,
                household_type: r::HouseholdType::Registered,
                residents: vec![],
                tags: vec![],
                visit_class: r::VisitClass::Ordinary,
                assigned_worker: None,
                risk_level: None,
                last_visit_at: None,
                next_visit_due: None,
                notes: String::new(),
            }),
            to_value(r::Visit {
                household_id: "h1".into(),
                visit_type: r::VisitType::Routine,
                started_at: at,
                ended_at: None,
                outcome: r::VisitOutcome::Met,
                gps: None,
                people_met: vec![],
                visitors: vec![],
                observations: String::new(),
                issues: vec![],
                publicity: vec![],
                photos: vec![],
                next_visit_due: None,
                linked_cases: vec![],
            }),
            to_value(r::Patrol {
                started_at: at,
                ended_at: None,
                team: vec![],
                route: vec![],
                checkpoints: vec![],
                incidents: vec![],
                hand_over_notes: String::new(),
            }),
            to_value(r::Case {
                case_type: r::CaseType::LowIncome,
                household_id: None,
                subject_name: None,
                source: None,
                cause: String::new(),
                needs: vec![],
                responsible: None,
                plan: String::new(),
                next_review_due: None,
                actions: vec![],
                status: r::CaseStatus::Open,
                notes: String::new(),
            }),
            to_value(r::Report {
                category: r::ReportCategory::Dispute,
                urgency: r::Urgency::Normal,
                occurred_at: None,
                discovered_at: at,
                place: String::new(),
                description: String::new(),
                scope: String::new(),
                measures: String::new(),
                deadline: None,
                phoned_in_at: None,
                status: r::ReportStatus::Received,
                follow_ups: vec![],
            }),
        ];
        let mut fields: Vec<String> = r::SYSTEM_FIELDS
            .iter()
            .chain(r::TOUCH_FIELDS)
            .chain(&["deleted"])
            .map(|f| f.to_string())
            .collect();
        for record in records {
            fields.extend(record.unwrap().as_object().unwrap().keys().cloned());
        }
        for field in fields {
            assert!(
                lookup(VALUES, &format!("field.{field}")).is_some(),
                "no label for {field}"
            );
        }
    }

    #[test]
    fn test_values_and_errors_are_translated() {
        assert_eq!(Lang::Zh.label("case_status", "in_progress"), "帮扶中");
        assert_eq!(Lang::En.label("urgency", "critical"), "Critical");
        assert_eq!(
            Lang::Zh.label("case_status", "future_status"),
            "future_status"
        );
        let e = ValidationError::MissingField("description".into());
        assert_eq!(Lang::Zh.validation(&e), "缺少必填项：「事件描述」");
    }
}
