//! How a record's photos and files read: the record page's gallery (each photo as a thumbnail
//! that opens the full image, its caption, who added it and when, its size; a file as a link by
//! its name), the same as a strip of small thumbnails wherever values are shown (the history, the
//! review page), and the office's form to attach a file. An attachment whose bytes have not
//! reached the relay says so instead of showing a broken image.

use std::collections::HashSet;

use gridsync_core::record::Attachment;
use gridsync_core::record::Kind;
use gridsync_core::record::attachment::{self, FIELD_NAME};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::auth::Staff;
use super::i18n::Lang;
use super::values::Names;
use super::{Dashboard, layout, person, thumbs};
use crate::accounts;

/// The attachments a value names: the entries of an `attachments` list, or one entry. Entries
/// that are not well-formed are left out (a received record is shown as it is).
pub fn entries(v: &Value) -> Vec<Attachment> {
    let one = |v: &Value| {
        serde_json::from_value::<Attachment>(v.clone())
            .ok()
            .filter(|a| attachment::parse_hash(&a.hash).is_some())
    };
    match v {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        Value::Object(_) => one(v).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The hashes of the attachments a record's fields name.
pub fn hashes(fields: &Map<String, Value>) -> Vec<String> {
    fields
        .get(FIELD_NAME)
        .map(entries)
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.hash)
        .collect()
}

/// Whether records of `kind` carry attachments.
pub fn carries(kind: Kind) -> bool {
    kind.spec().field(FIELD_NAME).is_some()
}

/// The full image's address and its thumbnail's.
pub fn href(hash: &str) -> String {
    format!("/attachments/{hash}")
}

pub fn thumb_href(hash: &str) -> String {
    format!("/attachments/{hash}/thumb")
}

/// A size for people: 980 B, 340 KB, 2.4 MB.
pub fn size_text(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} B")
    } else if b < K * K {
        format!("{:.0} KB", b / K)
    } else {
        format!("{:.1} MB", b / (K * K))
    }
}

fn is_photo(a: &Attachment) -> bool {
    a.media_type.starts_with("image/")
}

/// The words for an attachment the relay does not hold yet.
fn missing(lang: Lang, a: &Attachment) -> &'static str {
    lang.t(if is_photo(a) {
        "att.photo_missing"
    } else {
        "att.file_missing"
    })
}

fn file_name(lang: Lang, a: &Attachment) -> String {
    a.name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            if a.caption.trim().is_empty() {
                lang.t("att.file").to_string()
            } else {
                a.caption.clone()
            }
        })
}

/// The record page's gallery: one card an attachment, in the record's order.
pub fn gallery(
    lang: Lang,
    dash: &Dashboard,
    names: &Names,
    items: &[Attachment],
    sensitive: &HashSet<String>,
) -> Markup {
    html! {
        @if items.is_empty() { p class="muted" id="gallery-empty" { (lang.t("att.none")) } }
        @else {
            ul class="gallery" id="gallery" {
                @for a in items {
                    @let arrived = names.arrived.contains(&a.hash);
                    li class={ "attachment" @if !arrived { " missing" } } data-hash=(a.hash) {
                        (preview(lang, a, arrived, "thumb"))
                        div class="about" {
                            @if !a.caption.trim().is_empty() { strong class="caption" { (a.caption) } }
                            @if !is_photo(a) || a.name.is_some() { span class="name" { (file_name(lang, a)) } }
                            span class="muted" {
                                (size_text(a.size))
                                @if let (Some(w), Some(h)) = (a.width, a.height) { " · " (w) "×" (h) }
                            }
                            span class="muted" {
                                @if let Some(at) = a.at { (dash.show_time(&at.to_rfc3339())) }
                                @if let Some(by) = &a.by { @if a.at.is_some() { " · " } (person(&names.people, by)) }
                            }
                            @if sensitive.contains(&a.hash) { span class="tag warn" { (lang.t("att.sensitive")) } }
                        }
                    }
                }
            }
        }
    }
}

/// An attachment as a link: a thumbnail when the relay holds the photo and makes thumbnails of
/// its type, a file link otherwise, and words in place of either while its bytes are on the
/// way.
fn preview(lang: Lang, a: &Attachment, arrived: bool, class: &str) -> Markup {
    let alt = if a.caption.trim().is_empty() {
        file_name(lang, a)
    } else {
        a.caption.clone()
    };
    html! {
        @if !arrived {
            span class={ (class) " not-yet" } title=(a.hash) { (missing(lang, a)) }
        } @else if thumbs::makes(&a.media_type) {
            a class=(class) href=(href(&a.hash)) target="_blank" rel="noopener" {
                img src=(thumb_href(&a.hash)) alt=(alt) loading="lazy";
            }
        } @else {
            a class={ (class) " file" } href=(href(&a.hash)) download=(file_name(lang, a)) {
                (file_name(lang, a)) " (" (size_text(a.size)) ")"
            }
        }
    }
}

/// Attachments among other values (the history, the review page): small thumbnails in a row.
pub fn strip(lang: Lang, names: &Names, items: &[Attachment]) -> Markup {
    html! {
        span class="strip" {
            @for a in items {
                span class="attachment" data-hash=(a.hash) {
                    (preview(lang, a, names.arrived.contains(&a.hash), "mini"))
                }
            }
        }
    }
}

/// The office's form to attach a file to a record (multipart, with the session's CSRF token
/// first so that the relay checks it before it takes any byte of the file).
pub fn attach_form(staff: &Staff, kind: Kind, id: &str, max_bytes: u64) -> Markup {
    let lang = staff.lang;
    html! {
        @if carries(kind) && accounts::can_write(staff.user.role, kind) {
            form method="post" action={ "/records/" (layout::encode(id)) "/attach" }
                enctype="multipart/form-data" class="act" id="attach" {
                (layout::csrf_field(staff))
                label { (lang.t("att.caption")) input name="caption" maxlength="200"; }
                label { (lang.t("att.file_input")) input type="file" name="file" required; }
                span class="muted" { (lang.t("att.limit")) (lang.colon()) (size_text(max_bytes)) }
                button type="submit" { (lang.t("att.attach")) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sizes_read_in_bytes_kilobytes_and_megabytes() {
        assert_eq!(size_text(980), "980 B");
        assert_eq!(size_text(340 * 1024), "340 KB");
        assert_eq!(size_text(2_516_582), "2.4 MB");
    }
}
