//! The page shell (header, navigation, language switch) and small shared pieces of markup.

use maud::{DOCTYPE, Markup, html};

use super::auth::Staff;
use super::i18n::Lang;

/// A full page for a signed-in user. `active` names the navigation entry to highlight.
pub fn page(staff: &Staff, active: &str, title: &str, body: Markup) -> Markup {
    let lang = staff.lang;
    let nav = [
        ("overview", "/", lang.t("nav.overview")),
        ("records", "/records", lang.t("nav.records")),
        ("review", "/review", lang.t("nav.review")),
        ("reports", "/reports", lang.t("nav.reports")),
        ("tasks", "/tasks", lang.t("nav.tasks")),
        ("co", "/units", lang.t("nav.co")),
        ("supermarket", "/supermarket", lang.t("nav.supermarket")),
        ("stats", "/stats", lang.t("nav.stats")),
        ("assessment", "/assessment", lang.t("nav.assessment")),
    ];
    html! {
        (DOCTYPE)
        html lang=(lang.html_lang()) {
            (head(title, lang))
            body {
                header class="top" {
                    a class="brand" href="/" { (lang.t("app")) }
                    nav {
                        @for (key, href, label) in nav {
                            a href=(href) class=[(key == active).then_some("active")] { (label) }
                        }
                    }
                    div class="who" {
                        span { (staff.user.display_name) " (" (staff.user.username) ")" }
                        (lang_switch(lang, &staff.path))
                        form method="post" action="/logout" class="inline" {
                            (csrf_field(staff))
                            button type="submit" class="link" { (lang.t("logout")) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page for someone not signed in (the sign-in form).
pub fn bare(lang: Lang, title: &str, back: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.html_lang()) {
            (head(title, lang))
            body class="bare" {
                header class="top" {
                    span class="brand" { (lang.t("app")) }
                    div class="who" { (lang_switch(lang, back)) }
                }
                main { (body) }
            }
        }
    }
}

fn head(title: &str, lang: Lang) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · " (lang.t("app")) }
            link rel="stylesheet" href="/assets/app.css";
            (icon_link())
            script src="/assets/app.js" defer {}
        }
    }
}

/// The page's icon, served by the dashboard itself (a browser without one asks for
/// /favicon.ico, which answers too).
pub fn icon_link() -> Markup {
    html! { link rel="icon" type="image/svg+xml" href="/favicon.svg"; }
}

fn lang_switch(lang: Lang, back: &str) -> Markup {
    let href = format!("/lang?to={}&back={}", lang.other().code(), encode(back));
    html! { a class="lang" href=(href) lang=(lang.other().html_lang()) { (lang.t("switch_lang")) } }
}

/// The hidden field every form that changes something carries.
pub fn csrf_field(staff: &Staff) -> Markup {
    html! { input type="hidden" name="csrf" value=(staff.csrf); }
}

/// A `<select>` with an "all" entry (value "") first.
pub fn select(name: &str, all: &str, options: &[(String, String)], selected: &str) -> Markup {
    html! {
        select name=(name) {
            option value="" { (all) }
            @for (value, label) in options {
                option value=(value) selected[value == selected] { (label) }
            }
        }
    }
}

/// A message at the top of a page.
pub fn flash(message: Option<&str>, error: bool) -> Markup {
    html! {
        @if let Some(m) = message {
            p class={ "flash" @if error { " error" } } role="status" { (m) }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A query string from pairs, skipping empty values.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Shows a JSON value compactly for a table cell: strings bare, the rest as JSON, cut short.
pub fn show_json(v: &serde_json::Value, max: usize) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".to_string(),
        other => other.to_string(),
    };
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Masks an ID number as the domain asks: the first 4 and last 4 characters only.
pub fn mask_id(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

/// Replaces every `id_number` in a JSON value by its masked form.
pub fn mask_sensitive(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, value) in map.iter_mut() {
                if k == "id_number" {
                    if let serde_json::Value::String(s) = value {
                        *s = mask_id(s);
                    }
                } else {
                    mask_sensitive(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_sensitive),
        _ => {}
    }
}
