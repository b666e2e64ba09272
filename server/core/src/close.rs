//! WebSocket close codes the server sends (RFC 6455 section 7.4.1), named once. A client shows the
//! reason that goes with each; the code tells it whether to reconnect.

/// The server is going away (shutdown), or a ping went unanswered: reconnect.
pub const GOING_AWAY: u16 = 1001;
/// A text frame: y-websocket speaks binary only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Malformed or hostile payload.
pub const INVALID_DATA: u16 = 1007;
/// Policy: a rotated link, a deleted session.
pub const POLICY: u16 = 1008;
/// A message over the size limit.
pub const TOO_LARGE: u16 = 1009;
/// Storage failure or a damaged document.
pub const INTERNAL: u16 = 1011;
/// Too slow to keep up, or limits reached: reconnect later and resync.
pub const TRY_AGAIN_LATER: u16 = 1013;

// Refused for good: codes in 4400-4499, which y-websocket (3.1 and later) takes as permanent, so a
// stock client stops reconnecting and emits `closed` instead of knocking forever.

/// The link was replaced (rotated): its token will never work again.
pub const LINK_REPLACED: u16 = 4403;
/// The document's name differs only in case from another document's (or a session's).
pub const NAME_CONFLICT: u16 = 4409;
/// The document has reached its size limit: the update that would pass it is refused for good
/// (sending it again would not help).
pub const DOCUMENT_FULL: u16 = 4413;
/// The session was deleted; its names are never served again.
pub const SESSION_DELETED: u16 = 4410;
