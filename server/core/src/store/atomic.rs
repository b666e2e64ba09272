//! Replacing a file so that a crash at any instant leaves either the old file or the new one,
//! never a mix: write a temporary file beside it, fsync it, rename it over the old name, fsync the
//! directory (without that last step the rename itself may not survive a power cut). Snapshots,
//! session records and the server's secrets are all written this way.
//!
//! Everything in a data directory is private (collaborators' emails live in it): directories are
//! made 0700 ([`private_dir`]) and files 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where a write failed, for an error message that names the file.
#[derive(Debug, thiserror::Error)]
#[error("I/O error on {path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl FileError {
    pub fn at(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
        move |source| FileError { path: path.to_owned(), source }
    }
}

/// The steps of [`write_atomic_with`], after each of which a test may inject a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The temporary file holds the bytes (not yet synced).
    Written,
    /// The temporary file is synced.
    Synced,
    /// The temporary file has the final name.
    Renamed,
    /// The directory is synced: the new file survives a power cut.
    DirSynced,
}

/// How to write.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// File mode of the new file (Unix), e.g. 0o600 for secrets.
    pub mode: u32,
    /// fsync the file and the directory (off only for benchmarks with `--no-fsync`).
    pub fsync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { mode: 0o600, fsync: true }
    }
}

/// Creates `dir` and any missing parent with mode 0700, and takes group and other access away from
/// it if it already existed with them (a data directory made by an older version).
pub fn private_dir(dir: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(FileError::at(dir))?;
        let mode = fs::metadata(dir).map_err(FileError::at(dir))?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o700)).map_err(FileError::at(dir))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir).map_err(FileError::at(dir))
}

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8], options: Options) -> Result<(), FileError> {
    write_atomic_with(path, bytes, options, |_, _| Ok(()))
}

/// [`write_atomic`], calling `fault(step, path)` after each step (storage fault-injection tests).
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    options: Options,
    mut fault: impl FnMut(Step, &Path) -> io::Result<()>,
) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut open = OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    open.mode(options.mode);
    let mut f = open.open(&tmp).map_err(FileError::at(&tmp))?;
    f.write_all(bytes).map_err(FileError::at(&tmp))?;
    fault(Step::Written, &tmp).map_err(FileError::at(&tmp))?;
    if options.fsync {
        f.sync_all().map_err(FileError::at(&tmp))?;
    }
    drop(f);
    fault(Step::Synced, &tmp).map_err(FileError::at(&tmp))?;
    fs::rename(&tmp, path).map_err(FileError::at(path))?;
    fault(Step::Renamed, path).map_err(FileError::at(path))?;
    if options.fsync {
        sync_dir(dir)?;
    }
    fault(Step::DirSynced, dir).map_err(FileError::at(dir))?;
    Ok(())
}

/// fsyncs a directory, so that the names created, renamed or removed in it survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(FileError::at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_with_the_mode_asked_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new", Options { mode: 0o600, fsync: true }).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
    }

    #[test]
    fn a_fault_before_the_rename_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        fs::write(&path, b"old").unwrap();
        for step in [Step::Written, Step::Synced] {
            let err = write_atomic_with(&path, b"new", Options::default(), |s, _| {
                if s == step {
                    Err(io::Error::other("injected"))
                } else {
                    Ok(())
                }
            });
            assert!(err.is_err(), "{step:?}");
            assert_eq!(fs::read(&path).unwrap(), b"old", "{step:?}");
        }
    }
}
