//! Every word the dashboard shows, in Chinese (the default) and English.
//!
//! UI text is looked up by key in [`TEXT`]. The words of records — kinds, fields, statuses,
//! types, categories — come from the kinds' specs in client-core (`record::schema`), the same
//! words a phone shows; a value nobody labelled (written by a newer phone) is shown as it is
//! stored, never dropped. The unit tests check that every key the pages use exists in both
//! languages and that every field and choice of every kind has a label.

use gridsync_core::record::schema::{self, FieldType};
use gridsync_core::record::{Kind, ValidationError};

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

    /// A stored value's label, e.g. `label("case_status", "in_progress")` → 帮扶中: kinds,
    /// fields (`label("field", "head_name")`, also by path) and choices from the kinds' specs in
    /// client-core (the words a phone shows too); anything else as it is stored.
    pub fn label(self, group: &str, value: &str) -> String {
        let known = match group {
            "kind" => value.parse::<Kind>().ok().map(|k| k.spec().label),
            "field" => schema::field_label(value),
            _ => schema::choice_label(group, value),
        };
        if let Some(label) = known {
            return self.pick(label.zh, label.en).to_string();
        }
        value.to_string()
    }

    /// The label of a field of a record of `kind`, by path or name (`residents[0].name`):
    /// the kind's own word for it.
    pub fn field(self, kind: Kind, path: &str) -> String {
        schema::field_label_in(kind, path)
            .map_or_else(|| path.to_string(), |l| self.pick(l.zh, l.en).to_string())
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
    let mut found = None;
    for kind in Kind::ALL_STORED {
        schema::walk(kind.spec().fields, |_, f| {
            if let (None, FieldType::Choice(set)) = (found, f.ty)
                && set.codes().eq(values.iter().copied())
            {
                found = Some((f.name, set.group));
            }
        });
    }
    found
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
    ("nav.tasks", "派单任务", "Tasks"),
    ("nav.co", "共驻共建", "Co-construction"),
    ("nav.supermarket", "爱心超市", "Love supermarket"),
    ("nav.assessment", "考核", "Assessment"),
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
    ("cy.area", "街道/社区", "Street or community"),
    ("cy.all", "全部辖区", "Whole area"),
    ("cy.by_street", "各街道汇总", "By street"),
    ("cy.by_community", "各社区汇总", "By community"),
    ("cy.street", "街道", "Street"),
    ("cy.community", "社区", "Community"),
    ("cy.tasks_overdue", "逾期任务", "Tasks overdue"),
    ("cy.low_stock", "库存不足", "Low stock"),
    (
        "err.area",
        "该区域不在您的管辖范围内",
        "This area is outside your scope",
    ),
    ("rec.fields", "记录内容", "Fields"),
    ("rec.history", "修改历史", "History"),
    (
        "rec.history_hint",
        "谁、何时、在哪台设备上改了哪些内容（原来的内容 → 改后的内容），最新的在最上面。标「同时修改」的，是和别人在离线时同时做的修改，系统已把两边合在一起。",
        "Who changed what, when and on which device (before → after), newest first. “At the same time” marks a change made offline while someone else changed the record too; both were kept.",
    ),
    ("rec.author", "修改人", "Author"),
    ("rec.device", "设备", "Device"),
    ("rec.device_time", "设备时间", "Device time"),
    ("rec.changed", "修改的字段", "Fields changed"),
    ("rec.created", "创建记录", "Created the record"),
    ("rec.concurrent", "同时修改", "At the same time"),
    (
        "rec.concurrent_hint",
        "这次修改时，修改人还没有看到别人同时做的修改",
        "Made before its author saw someone else's change made at the same time",
    ),
    ("rec.no_change", "内容未变", "Nothing changed"),
    ("rec.added", "新增", "Added"),
    ("rec.removed", "已清空", "cleared"),
    ("rec.group_own", "基本信息", "Details"),
    ("rec.group_lists", "明细", "Entries"),
    ("rec.group_system", "系统信息", "System"),
    (
        "rec.unknown_ref",
        "（服务器上没有这条记录，或不在您的管辖范围内）",
        "(a record this server does not hold, or outside your area)",
    ),
    ("empty", "无", "none"),
    ("yes", "是", "yes"),
    ("no", "否", "no"),
    ("paren.open", "（", " ("),
    ("paren.close", "）", ")"),
    ("role.grid_worker", "网格员", "Grid workers"),
    ("role.office", "社区办公室", "Community office"),
    (
        "err.not_grid_staff",
        "负责人须是本网格的网格员或社区办公室工作人员",
        "The person responsible must be a grid worker or office staff of this record's grid",
    ),
    ("hh.all", "查看全部", "See them all"),
    ("rec.actions", "办公室操作", "Office actions"),
    (
        "att.photo_missing",
        "照片尚未收到",
        "Photo not yet received",
    ),
    ("att.file_missing", "文件尚未收到", "File not yet received"),
    ("att.file", "文件", "File"),
    ("att.none", "暂无照片和附件", "No photos or files yet"),
    ("att.sensitive", "敏感信息", "Sensitive"),
    ("att.caption", "说明", "Caption"),
    ("att.file_input", "选择文件", "File"),
    ("att.limit", "大小上限", "At most"),
    ("att.attach", "上传附件", "Attach"),
    ("att.added", "添加的附件", "Attachments added"),
    (
        "att.too_large",
        "文件太大，超过上传上限",
        "The file is larger than the relay takes",
    ),
    (
        "att.no_file",
        "请选择要上传的文件",
        "Choose a file to attach",
    ),
    (
        "att.bad_upload",
        "上传未完成，请重试",
        "The upload did not complete: try again",
    ),
    (
        "rec.to_review",
        "此记录有待审核的冲突",
        "This record has conflicts awaiting review",
    ),
    ("act.assign", "指派负责人", "Assign"),
    ("move.title", "调整网格", "Move to another grid"),
    ("move.to", "调整到", "Move to"),
    (
        "move.hint",
        "户及其走访、个案等记录一并调整；原网格的设备在未发送的修改送达后删除这些记录。",
        "The household moves with its visits, cases and other records; the old grid's devices drop them once their unsent edits have arrived.",
    ),
    ("move.submit", "调整", "Move"),
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
        "两人离线同时修改了同一记录。并行编辑不同字段已自动合并，请核对；同一字段的不同值需选定一个；同一段文字被两人同时修改的，请对照两个版本改写。",
        "Two people edited the same record offline. Edits of different fields merged by themselves: check them. Different values of the same field: choose one. A text both edited: compare the two versions and rewrite it.",
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
    ("rv.settled", "最近已解决", "Recently settled"),
    (
        "rv.settled_hint",
        "近 7 天内解决的记录：由办公室审核，或由网格员在手机上重新填写了有冲突的内容。",
        "Records settled in the last 7 days: reviewed by the office, or settled by a worker who wrote the field in conflict again on a phone.",
    ),
    ("rv.settled_at", "解决时间", "Settled at"),
    ("rv.settled_by", "解决人", "Settled by"),
    ("rv.settled_tag", "已解决", "Settled"),
    (
        "rv.text",
        "同一段文字被两人同时修改",
        "Text edited by two people at once",
    ),
    (
        "rv.text_hint",
        "两人在离线时同时修改了这段文字，系统把两人的文字合在了一起。请对照两个版本，把合并后的文字改写通顺后保存；改写会同步到网格员的手机。",
        "Two people edited this text offline at the same time, and their words were run together. Compare both versions, rewrite the merged text and save it; it syncs to the workers' phones.",
    ),
    (
        "rv.text_merged",
        "合并后的文字（可改写）",
        "The merged text (rewrite it)",
    ),
    ("rv.text_save", "保存改写", "Save the rewrite"),
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
    ("st.activities", "活动", "Activities"),
    ("st.hours", "志愿服务时长（小时）", "Volunteer hours"),
    ("st.goods_in", "物资入库（次）", "Goods in (times)"),
    ("st.goods_out", "物资发放（次）", "Goods out (times)"),
    ("st.households_served", "领取物资户数", "Households served"),
    ("st.by_grid", "按网格", "By grid"),
    (
        "st.hours_by_unit",
        "志愿服务时长（按共建单位）",
        "Volunteer hours by unit",
    ),
    (
        "st.goods_by_item",
        "爱心超市出入库（按物品）",
        "Love-supermarket goods by item",
    ),
    (
        "tk.dispatched",
        "已派单，承办人的手机下次同步时收到",
        "Dispatched; the assignee's phone receives it at its next sync",
    ),
    ("tk.new", "新建派单", "New task"),
    ("co.volunteers", "志愿者数", "Volunteers"),
    (
        "co.hours_month",
        "当月服务时长（小时）",
        "Hours in the month",
    ),
    ("co.hours_year", "当年累计时长（小时）", "Hours this year"),
    ("co.activities_year", "当年参加活动", "Activities this year"),
    (
        "co.hours_hint",
        "服务时长来自活动记录中参加人员的时长，按活动开始时间计入月份；单位的时长包括以单位名义参加的和本单位志愿者参加的。",
        "Hours come from the participants of activities, counted in the month the activity started; a unit's hours are those given in its name and by its volunteers.",
    ),
    (
        "co.by_type",
        "当月活动（按类型）",
        "Activities in the month by type",
    ),
    ("co.this_month", "当月活动", "Activities in the month"),
    ("co.participants", "参加人次", "Participants"),
    ("co.hours", "服务时长（小时）", "Hours"),
    ("as.by_worker", "考核·网格员", "Assessment by grid worker"),
    ("as.by_grid", "考核·网格", "Assessment by grid"),
    ("as.worker", "网格员", "Grid worker"),
    ("as.households_due", "应走访户", "Households due"),
    ("as.households_visited", "已走访户", "Households visited"),
    ("as.coverage", "走访覆盖率", "Visit coverage"),
    ("as.tasks_due", "到期任务", "Tasks due"),
    ("as.tasks_on_time", "按期办理", "Handled on time"),
    ("as.tasks_rate", "按期办理率", "On-time rate"),
    ("as.reports", "社情民意", "Urgent reports"),
    ("as.reports_on_time", "按时报送", "Reported on time"),
    ("as.reports_rate", "按时报送率", "On-time rate (reports)"),
    ("as.patrol_hours", "巡逻时长（小时）", "Patrol hours"),
    (
        "as.hint",
        "应走访户：下次走访日期在当月底之前（或尚无日期）的户，以及当月已走访的户；已走访：当月有「见到本人」的走访。到期任务：办理期限在当月的派单任务，按期办理指在期限前处置。社情民意按发现时间计入月份。巡逻时长：当月开始并已结束的巡逻。",
        "Households due: those whose next visit falls due by the month's end (or that have no date yet), and those visited in the month; visited: a visit in the month that met the household. Tasks due: tasks whose deadline falls in the month; on time: handled by it. Urgent reports count in the month they were discovered. Patrol hours: shifts started in the month that have ended.",
    ),
    ("sm.low", "库存不足", "Low stock"),
    ("sm.low_tag", "库存不足", "Low"),
    ("sm.on_hand", "现有库存", "On hand"),
    ("sm.stock", "物品库存", "Stock"),
    ("sm.in_month", "当月入库", "In, this month"),
    ("sm.out_month", "当月发放", "Out, this month"),
    ("sm.overdrawn", "超发待核", "Overdrawn"),
    (
        "sm.by_month",
        "近六个月出入库",
        "In and out, last six months",
    ),
    (
        "sm.received",
        "当月领取记录",
        "Who received what in the month",
    ),
    ("tk.rules", "默认办理期限", "Default deadlines"),
    ("tk.hours", "小时", "h"),
    ("tk.open", "未结案", "Open"),
    ("tk.overdue", "逾期未办", "Overdue"),
    ("tk.overdue_by", "逾期", "Overdue by"),
    ("tk.to_check", "待核查", "To verify"),
    ("tk.assignee", "承办", "Assigned to"),
    ("tk.left", "剩余时间", "Time left"),
    ("tk.handled_on_time", "按期办理", "Handled on time"),
    ("tk.handled_late", "超期办理", "Handled late"),
    ("tk.verify", "核查通过", "Verify"),
    ("tk.send_back", "退回", "Send back"),
    ("tk.close", "结案", "Close"),
    ("tk.reason", "退回原因", "Reason"),
    ("tk.dispatch", "派单", "Dispatch"),
    ("tk.dispatch_from", "据此派单", "Dispatch a task from this"),
    (
        "tk.deadline_hint",
        "办理期限按任务来源的默认规则给出，可以修改；时间为社区当地时间。",
        "The deadline is proposed by the rule for the task's source and may be changed; times are the community's.",
    ),
    (
        "tk.err_deadline",
        "请填写有效的办理期限",
        "Enter a valid deadline",
    ),
    (
        "tk.err_assignee",
        "请选择承办人或承办单位",
        "Choose a worker or a unit to dispatch it to",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use gridsync_core::record::Kind;

    #[test]
    fn test_every_text_has_both_languages_and_no_duplicates() {
        for table in [TEXT] {
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
            include_str!("tasks.rs"),
            include_str!("co.rs"),
            include_str!("supermarket.rs"),
            include_str!("assessment.rs"),
            include_str!("export.rs"),
            include_str!("values.rs"),
            include_str!("household.rs"),
            include_str!("history.rs"),
            include_str!("area.rs"),
            include_str!("county.rs"),
        ];
        for src in sources {
            for part in src.split(".t(\"").skip(1) {
                let key = &part[..part.find('"').unwrap_or(0)];
                assert!(lookup(TEXT, key).is_some(), "missing translation for {key}");
            }
        }
    }

    /// The county tables' headers, named by key in their column lists.
    #[test]
    fn test_every_county_column_has_a_label_in_both_languages() {
        use super::super::county::{OVERVIEW, REPORTS};
        let keys = OVERVIEW.iter().chain(REPORTS).map(|(key, _, _)| *key);
        for key in keys.chain(["cy.community", "cy.street", "grid"]) {
            let (zh, en) = lookup(TEXT, key).unwrap_or_else(|| panic!("no label for {key}"));
            assert!(!zh.is_empty() && !en.is_empty(), "{key}");
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

    /// A label in both languages that is not the key it was asked for.
    fn labelled(group: &str, value: &str) -> bool {
        let (zh, en) = (Lang::Zh.label(group, value), Lang::En.label(group, value));
        zh != value && !zh.is_empty() && !en.is_empty()
    }

    /// Each choice the filters and the review page offer is a value the record accepts, with
    /// labels in both languages: every enumerated top-level field of every kind.
    #[test]
    fn test_every_choice_is_a_valid_value_with_labels() {
        let mut seen = 0;
        for kind in Kind::ALL_STORED {
            for field in kind.spec().fields {
                let Some((group, values)) = super::super::choices(kind, field.name) else {
                    continue;
                };
                seen += 1;
                assert!(labelled("field", field.name), "{kind}.{}", field.name);
                assert!(!values.is_empty(), "{kind}.{}", field.name);
                for v in values {
                    let mut record = serde_json::Map::new();
                    record.insert(field.name.into(), v.into());
                    let err =
                        gridsync_core::record::validate(kind, &mut record, None, &NoHouseholds)
                            .err()
                            .map(|e| e.to_string())
                            .unwrap_or_default();
                    assert!(!err.contains(v), "{kind}.{} = {v}: {err}", field.name);
                    assert!(labelled(group, v), "{group}.{v}");
                }
            }
        }
        assert!(seen >= 11, "only {seen} enumerated fields");
    }

    /// Every detail of a list entry or a nested record that a page shows as running text (see
    /// `record::readable`) is named by a label in both languages, and so is every coded value
    /// in it: no English key or stored code reaches the page.
    #[test]
    fn test_every_detail_of_list_entries_and_nested_records_has_a_label() {
        use super::super::values::entry_group;
        for kind in Kind::ALL_STORED {
            for field in kind.spec().fields {
                for part in field.ty.parts() {
                    let path = match field.ty {
                        FieldType::Object(_) => format!("{}.{}", field.name, part.name),
                        _ => format!("{}[].{}", field.name, part.name),
                    };
                    assert!(labelled("field", &path), "{kind}.{path}");
                    assert!(labelled("field", part.name), "{kind}.{path}");
                    if let FieldType::Choice(set) = part.ty {
                        assert_eq!(entry_group(field.name, part.name), Some(set.group));
                        for code in set.codes() {
                            assert!(labelled(set.group, code), "{}.{code}", set.group);
                        }
                    }
                }
            }
        }
        for part in ["lat", "lon", "accuracy_m"] {
            assert!(labelled("field", part), "gps.{part}");
        }
    }

    /// Every top-level field a record page may show, the replica's own (`device_id`,
    /// `updated_at`, ...) included, is named by a label in both languages.
    #[test]
    fn test_every_field_of_every_kind_has_a_label() {
        use gridsync_core::record as r;
        let mut fields: Vec<&str> = r::SYSTEM_FIELDS
            .iter()
            .chain(r::TOUCH_FIELDS)
            .chain(&["deleted", "merged_into"])
            .copied()
            .collect();
        for kind in Kind::ALL_STORED {
            assert!(labelled("kind", kind.as_str()), "{kind}");
            fields.extend(kind.spec().fields.iter().map(|f| f.name));
        }
        for field in fields {
            assert!(labelled("field", field), "no label for {field}");
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
