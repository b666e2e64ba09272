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
