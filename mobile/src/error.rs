//! The one error of the library: a stable code to branch on, and a message in Chinese and in
//! English to show. In Kotlin it is `GridsyncException`, in Swift and Python `GridsyncError`.

use gridsync_core::Error as CoreError;
use gridsync_core::protocol::ErrorCode as WireCode;

pub type Result<T, E = GridsyncError> = std::result::Result<T, E>;

/// What went wrong, for an app to decide what to do. Codes are never renamed or reused; later
/// versions add codes (a wrong replica key, an untrusted certificate, a write the role may
/// not make), so keep an `else` branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum ErrorCode {
    /// The record is not acceptable (a missing or wrong field, a status change its lifecycle
    /// does not allow); nothing was stored. The message says which field and why.
    InvalidRecord,
    /// An argument is malformed: JSON that is not an object, an unknown record kind, a server
    /// address that is not `http://` or `https://`.
    InvalidArgument,
    /// No record with this id on this device.
    NotFound,
    /// The replica has not been signed in yet: call `signIn` first.
    NotSignedIn,
    /// The replica is signed in as another user: use another folder for them.
    AlreadySignedIn,
    /// Wrong username or password, or the account is deactivated.
    BadCredentials,
    /// Too many failed sign-ins from this user or address; the message says how long to wait.
    Throttled,
    /// The relay cannot be reached or the connection broke. Local data is untouched: try again
    /// later (a live session does so by itself).
    Unreachable,
    /// The relay no longer knows this device's token: sign in again. Nothing was erased.
    Unauthorized,
    /// The office revoked this device or deactivated its user: the replica has been erased.
    Revoked,
    /// The relay refused the session (an app too old for it, the relay shutting down).
    Refused,
    /// The relay sent something this version does not understand.
    Protocol,
    /// The replica's files could not be read or written (disk full, a damaged file).
    Storage,
    /// A blocking call was made from a thread that must not block: from inside a gridsync
    /// callback that runs on the library's network threads.
    Busy,
    /// The replica's key is missing, wrong, malformed, or given for a plain replica; nothing
    /// was read or written.
    WrongKey,
    /// The relay's TLS certificate is not trusted (or the CA certificate given is unusable);
    /// nothing was sent. The message says why.
    UntrustedCertificate,
    /// The signed-in user's role may never write this kind of record (a patrol volunteer
    /// creating a case or editing a household); nothing was stored. The message is the
    /// relay's own refusal: hide or disable what leads there for this role (`whoAmI().role`).
    NotAllowed,
    /// A photo or file cannot be attached (unreadable, empty, too large), or is not on this
    /// device: not uploaded yet by the phone that took it, refused by the relay, or not fetched
    /// yet (`wantAttachment`, then sync). The message says which.
    Attachment,
    /// A bug: please report it with the message.
    Internal,
}

/// An error of the gridsync library: `code()` to branch on, `messageZh()` and `messageEn()`
/// to show, and as text both, Chinese first (what the `gridsync` CLI prints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Object)]
#[uniffi::export(Debug, Display)]
#[error("{message_zh} {message_en}")]
pub struct GridsyncError {
    code: ErrorCode,
    message_zh: String,
    message_en: String,
}

#[uniffi::export]
impl GridsyncError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message in Chinese (zh-CN), for the worker.
    pub fn message_zh(&self) -> String {
        self.message_zh.clone()
    }

    /// The message in English, with the technical detail.
    pub fn message_en(&self) -> String {
        self.message_en.clone()
    }
}

impl GridsyncError {
    pub(crate) fn new(
        code: ErrorCode,
        message_zh: impl Into<String>,
        message_en: impl Into<String>,
    ) -> GridsyncError {
        GridsyncError {
            code,
            message_zh: message_zh.into(),
            message_en: message_en.into(),
        }
    }

    pub(crate) fn invalid_argument(zh: impl Into<String>, en: impl Into<String>) -> GridsyncError {
        GridsyncError::new(ErrorCode::InvalidArgument, zh, en)
    }

    pub(crate) fn busy(call: &str) -> GridsyncError {
        GridsyncError::new(
            ErrorCode::Busy,
            format!("不能在 gridsync 回调中调用 {call}"),
            format!(
                "{call} blocks and cannot be called from a gridsync callback on the library's \
                 network threads: call it from another thread"
            ),
        )
    }

    pub(crate) fn internal(en: impl Into<String>) -> GridsyncError {
        GridsyncError::new(ErrorCode::Internal, "内部错误", en)
    }
}

impl From<CoreError> for GridsyncError {
    fn from(e: CoreError) -> GridsyncError {
        use ErrorCode as C;
        let text = e.to_string();
        let (code, zh, en) = match e {
            CoreError::Invalid(v) => (
                C::InvalidRecord,
                "记录无效，未保存".to_string(),
                format!("invalid record, nothing was stored: {v}"),
            ),
            CoreError::NotFound(id) => {
                (C::NotFound, format!("此设备上没有编号为 {id} 的记录"), text)
            }
            CoreError::WrongKind { .. } => (C::InvalidArgument, "记录类型不符".into(), text),
            CoreError::NotInitialised => (
                C::NotSignedIn,
                "此设备尚未登录，请先登录".into(),
                "this device is not signed in yet: sign in first".into(),
            ),
            CoreError::AlreadyInitialised(user) => already_signed_in(&user),
            CoreError::SignInRefused { code, message } => {
                let (zh, en) = split_bilingual(&message);
                let code = match code {
                    WireCode::Unauthorized => C::BadCredentials,
                    WireCode::Throttled => C::Throttled,
                    WireCode::BadRequest => C::InvalidArgument,
                    _ => C::Refused,
                };
                (code, zh, en)
            }
            CoreError::Unreachable { url, message } => (
                C::Unreachable,
                "无法连接服务器，本地数据未受影响，请稍后再同步".into(),
                format!(
                    "cannot reach the server at {url} ({message}); local data is untouched, \
                     sync again later"
                ),
            ),
            CoreError::Unauthorized(message) => (
                C::Unauthorized,
                "请重新登录（本地数据未清除）".into(),
                format!(
                    "sign in again: the relay no longer knows this device ({}); nothing was erased",
                    split_bilingual(&message).1
                ),
            ),
            CoreError::Revoked(message) => (
                C::Revoked,
                "此设备已被停用，本地数据已清除".into(),
                format!(
                    "this device was revoked and its data erased ({})",
                    split_bilingual(&message).1
                ),
            ),
            CoreError::ReplicaKey(_) => {
                let (zh, en) = split_bilingual(&text);
                (C::WrongKey, zh, en)
            }
            CoreError::UntrustedCertificate { .. } | CoreError::BadCaCertificate(_) => {
                let (zh, en) = split_bilingual(&text);
                (C::UntrustedCertificate, zh, en)
            }
            CoreError::NotAllowed(_) => {
                let (zh, en) = split_bilingual(&text);
                (C::NotAllowed, zh, en)
            }
            CoreError::Attachment(_) => {
                let (zh, en) = split_bilingual(&text);
                (C::Attachment, zh, en)
            }
            CoreError::Refused(_) => (C::Refused, "服务器拒绝同步".into(), text),
            CoreError::Protocol(_) => (C::Protocol, "协议错误，请升级应用".into(), text),
            CoreError::Sqlite(_)
            | CoreError::CorruptDocument { .. }
            | CoreError::Automerge(_)
            | CoreError::Io(_) => (C::Storage, "本地数据读写错误".into(), text),
            _ => (C::Internal, "内部错误".into(), text),
        };
        GridsyncError::new(code, zh, en)
    }
}

pub(crate) fn already_signed_in(user: &str) -> (ErrorCode, String, String) {
    (
        ErrorCode::AlreadySignedIn,
        format!("此副本已由 {user} 登录，请为其他用户另选文件夹"),
        format!(
            "this replica is already signed in as {user}: open another folder for another user"
        ),
    )
}

/// The relay's messages are written "中文 English". Splits one at the first Latin letter;
/// a message without a Chinese part is used for both.
fn split_bilingual(message: &str) -> (String, String) {
    let message = message.trim();
    match message.find(|c: char| c.is_ascii_alphabetic()) {
        Some(0) | None => (message.to_string(), message.to_string()),
        Some(i) => {
            let zh = message[..i].trim().trim_end_matches([',', '，', ':', '：']);
            (zh.to_string(), message[i..].trim().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_wrong_password_is_bad_credentials_in_both_languages() {
        let e = GridsyncError::from(CoreError::SignInRefused {
            code: WireCode::Unauthorized,
            message: "用户名或密码错误 wrong username or password".into(),
        });
        assert_eq!(e.code(), ErrorCode::BadCredentials);
        assert_eq!(e.message_zh(), "用户名或密码错误");
        assert_eq!(e.message_en(), "wrong username or password");
        assert_eq!(e.to_string(), "用户名或密码错误 wrong username or password");
    }

    #[test]
    fn test_throttled_keeps_the_wait_in_both_messages() {
        let e = GridsyncError::from(CoreError::SignInRefused {
            code: WireCode::Throttled,
            message: "尝试次数过多，请 60 秒后再试 too many failed attempts; try again in 60 s"
                .into(),
        });
        assert_eq!(e.code(), ErrorCode::Throttled);
        assert!(e.message_zh().contains("60 秒"), "{}", e.message_zh());
        assert!(e.message_en().starts_with("too many"), "{}", e.message_en());
    }

    #[test]
    fn test_unreachable_says_local_data_is_untouched() {
        let e = GridsyncError::from(CoreError::Unreachable {
            url: "ws://127.0.0.1:9/v1/sync".into(),
            message: "connection refused".into(),
        });
        assert_eq!(e.code(), ErrorCode::Unreachable);
        assert!(e.message_zh().contains("本地数据未受影响"));
        assert!(e.message_en().contains("local data is untouched"));
    }

    #[test]
    fn test_a_write_the_role_may_not_make_is_not_allowed_in_the_relays_words() {
        use gridsync_core::access::{Role, check_write};
        use gridsync_core::record::Kind;
        let refused = check_write(Role::Volunteer, Kind::Case).unwrap_err();
        let e = GridsyncError::from(CoreError::NotAllowed(refused));
        assert_eq!(e.code(), ErrorCode::NotAllowed);
        assert_eq!(e.message_zh(), "巡逻志愿者无权写入帮扶个案");
        assert_eq!(e.message_en(), "a volunteer may not write case records");
        assert_eq!(e.to_string(), refused.to_string());
    }

    #[test]
    fn test_english_only_message_is_used_for_both() {
        assert_eq!(
            split_bilingual("bad request"),
            ("bad request".to_string(), "bad request".to_string())
        );
    }
}
