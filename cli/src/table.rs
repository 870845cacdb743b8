//! Plain-text tables aligned by display width: CJK characters take two terminal columns.

/// Terminal columns one character takes: 0 for controls and combining marks, 2 for East Asian
/// wide and fullwidth characters (CJK, Hangul, fullwidth forms, most emoji), else 1.
pub fn char_width(c: char) -> usize {
    let cp = c as u32;
    match cp {
        0..=0x1F | 0x7F..=0x9F => 0,
        0x0300..=0x036F | 0x200B..=0x200F | 0xFE00..=0xFE0F | 0x20D0..=0x20FF => 0,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3040..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// Terminal columns a string takes.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// `s` followed by spaces up to `cols` columns (unchanged if already wider).
pub fn pad(s: &str, cols: usize) -> String {
    let mut out = String::with_capacity(s.len() + cols);
    out.push_str(s);
    out.extend(std::iter::repeat_n(' ', cols.saturating_sub(width(s))));
    out
}

/// `s` cut to at most `cols` columns, ending in `…` when something was cut.
pub fn truncate(s: &str, cols: usize) -> String {
    if width(s) <= cols {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w + 1 > cols {
            break;
        }
        out.push(c);
        used += w;
    }
    if cols > 0 {
        out.push('…');
    }
    out
}

/// One line per cell: control characters (newlines, tabs) become spaces.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Renders a table: header row, a rule, then the rows, columns separated by ` | `.
/// Rows shorter than the header are padded with empty cells. No trailing spaces.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = cells.zip(&widths).map(|(cell, w)| pad(cell, *w)).collect();
        padded.join(" | ").trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(&mut headers.iter().copied()));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("-+-"));
    out.push('\n');
    for row in rows {
        let mut cells = row
            .iter()
            .map(String::as_str)
            .chain(std::iter::repeat(""))
            .take(widths.len());
        out.push_str(&line(&mut cells));
        out.push('\n');
    }
    out
}

/// `label: value` lines with the values aligned, for readable single-record output. A pair with
/// an empty label continues the one before (an entry of a list, one a line).
pub fn key_values(pairs: &[(String, String)]) -> String {
    let cols = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let key = if key.trim().is_empty() {
            String::new()
        } else {
            format!("{key}:")
        };
        out.push_str(&pad(&key, cols + 1));
        out.push(' ');
        out.push_str(value);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_width_counts_cjk_as_two_columns() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("张三"), 4);
        assert_eq!(width("编号 ID"), 7);
        assert_eq!(width("ＡＢ"), 4);
        assert_eq!(width("e\u{301}"), 1);
        assert_eq!(width(""), 0);
    }

    #[test]
    fn test_pad_fills_to_display_width() {
        assert_eq!(pad("张三", 6), "张三  ");
        assert_eq!(pad("ab", 1), "ab");
    }

    #[test]
    fn test_truncate_respects_wide_characters() {
        assert_eq!(truncate("短", 10), "短");
        let cut = truncate("一二三四五六", 7);
        assert_eq!(cut, "一二三…");
        assert!(width(&cut) <= 7);
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn test_clean_removes_line_breaks() {
        assert_eq!(clean("a\nb\tc"), "a b c");
    }

    #[test]
    fn test_table_columns_line_up_with_mixed_scripts() {
        let rows = vec![
            vec!["h1".to_string(), "张三 幸福小区-3".to_string()],
            vec!["h22".to_string(), "Li".to_string()],
        ];
        let table = render(&["编号 ID", "标题 Title"], &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        // The separator sits at the same display column on every line.
        let sep_col = |l: &str| width(&l[..l.find('|').unwrap()]);
        assert_eq!(sep_col(lines[0]), sep_col(lines[2]));
        assert_eq!(sep_col(lines[2]), sep_col(lines[3]));
        assert_eq!(lines[1], format!("{}-+-{}", "-".repeat(7), "-".repeat(15)));
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn test_table_pads_short_rows() {
        let table = render(&["a", "b"], &[vec!["x".to_string()]]);
        assert_eq!(table.lines().nth(2), Some("x |"));
    }

    #[test]
    fn test_key_values_align_values() {
        let out = key_values(&[
            ("工作人员 Worker".into(), "w1".into()),
            ("id".into(), "x".into()),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        let value_col = |l: &str, v: &str| width(&l[..l.rfind(v).unwrap()]);
        assert_eq!(value_col(lines[0], "w1"), value_col(lines[1], "x"));
    }
}
