//! Secrets in the data directory: the server key that signs share-link tokens, and the admin token.
//! Both are generated on first start and written with mode 0600 (atomically, so a crash never
//! leaves a half-written key that would silently invalidate every link).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use subtle::ConstantTimeEq;

use super::{SessionError, SharedRecords};
use commonpad_core::store::atomic::{write_atomic, Options};
use commonpad_core::Role;

/// The HMAC key. `Debug` is deliberately not derived: it must never reach a log.
#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl ServerKey {
    /// Loads `DATA/server.key`, creating it on first start.
    pub fn load_or_create(data: &Path) -> Result<ServerKey, SessionError> {
        let path = data.join("server.key");
        match fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| SessionError::BadKeyFile(path.clone()))?;
                check_private(&path)?;
                Ok(ServerKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_secret(&path, &key)?;
                Ok(ServerKey(key))
            }
            Err(e) => Err(SessionError::io(&path, e)),
        }
    }

    /// Cluster mode: the key every node shares, from PostgreSQL (made by the first node).
    pub async fn shared(shared: &dyn SharedRecords) -> Result<ServerKey, SessionError> {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let stored = shared.setting_or_insert("server_key", &URL_SAFE_NO_PAD.encode(key)).await?;
        let bytes = URL_SAFE_NO_PAD
            .decode(stored.as_bytes())
            .map_err(|_| SessionError::Shared("stored server key is not base64".into()))?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SessionError::Shared("stored server key is not 32 bytes".into()))?;
        Ok(ServerKey(key))
    }

    /// The token of one role of one session at one generation: HMAC-SHA256 over
    /// `session \0 role \0 generation`, base64url.
    pub fn token(&self, session: &str, role: Role, generation: u64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(session, role, generation))
    }

    /// Checks a presented token in constant time.
    pub fn verify(&self, presented: &str, session: &str, role: Role, generation: u64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(presented.as_bytes()) else { return false };
        bool::from(bytes.ct_eq(&self.mac(session, role, generation)))
    }

    fn mac(&self, session: &str, role: Role, generation: u64) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(session.as_bytes());
        mac.update(&[0]);
        mac.update(role.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(&generation.to_le_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The admin token: from the command line, or `DATA/admin.token` (generated on first start).
/// Returns the token and whether it was just generated (so the caller prints it once).
pub fn admin_token(data: &Path, given: Option<String>) -> Result<(AdminToken, bool), SessionError> {
    if let Some(t) = given {
        if t.len() < 16 {
            return Err(SessionError::WeakAdminToken);
        }
        return Ok((AdminToken(t), false));
    }
    let path = data.join("admin.token");
    match fs::read_to_string(&path) {
        Ok(t) => {
            check_private(&path)?;
            let t = t.trim().to_owned();
            if t.len() < 16 {
                return Err(SessionError::WeakAdminToken);
            }
            Ok((AdminToken(t), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 24];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            let t = URL_SAFE_NO_PAD.encode(raw);
            write_secret(&path, t.as_bytes())?;
            Ok((AdminToken(t), true))
        }
        Err(e) => Err(SessionError::io(&path, e)),
    }
}

/// Cluster mode: the admin token every node accepts, from PostgreSQL. A token given on the
/// command line replaces the stored one (give every node the same, or none); without one, the
/// first node generates it. Returns the token and whether this node just generated it.
pub async fn shared_admin_token(
    shared: &dyn SharedRecords,
    given: Option<String>,
) -> Result<(AdminToken, bool), SessionError> {
    if let Some(t) = given {
        if t.len() < 16 {
            return Err(SessionError::WeakAdminToken);
        }
        shared.put_setting("admin_token", &t).await?;
        return Ok((AdminToken(t), false));
    }
    let mut raw = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let generated = URL_SAFE_NO_PAD.encode(raw);
    let stored = shared.setting_or_insert("admin_token", &generated).await?;
    let fresh = stored == generated;
    Ok((AdminToken(stored), fresh))
}

#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn verify(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(self.0.as_bytes()))
    }

    /// The token itself, for the one line that prints it on first start.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

fn check_private(path: &Path) -> Result<(), SessionError> {
    let mode = fs::metadata(path).map_err(|e| SessionError::io(path, e))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "secret file is readable by others; fixing to 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| SessionError::io(path, e))?;
    }
    Ok(())
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), SessionError> {
    Ok(write_atomic(path, bytes, Options { mode: 0o600, fsync: true })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_session_role_and_generation() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(dir.path()).unwrap();
        let t = key.token("s1", Role::Edit, 0);
        assert!(key.verify(&t, "s1", Role::Edit, 0));
        assert!(!key.verify(&t, "s1", Role::View, 0));
        assert!(!key.verify(&t, "s1", Role::Edit, 1));
        assert!(!key.verify(&t, "s2", Role::Edit, 0));
        assert!(!key.verify("not base64 !", "s1", Role::Edit, 0));
        // The same key comes back after a restart, with mode 0600.
        let again = ServerKey::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&t, "s1", Role::Edit, 0));
        let mode = fs::metadata(dir.path().join("server.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn admin_token_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let (t, fresh) = admin_token(dir.path(), None).unwrap();
        assert!(fresh);
        let (again, fresh) = admin_token(dir.path(), None).unwrap();
        assert!(!fresh);
        assert!(again.verify(t.reveal()));
        assert!(admin_token(dir.path(), Some("short".into())).is_err());
    }
}
