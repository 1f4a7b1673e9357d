//! Reading rule and list files as untrusted input: regular files only
//! (a FIFO or a device would hang or never end), a size cap, UTF-8 text
//! with the place of the first bad byte, and errors that never quote the
//! file, which may be something else than the rule file it was meant to be.

use std::{
    fs::File,
    io::Read as _,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::error::line_col;

/// Largest rule file read: far beyond any hand-written one.
pub(crate) const MAX_RULE_FILE: u64 = 1 << 20;
/// Largest list file read: 100,000 IPv6 prefixes with comments fit.
const MAX_LIST_FILE: u64 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    // The I/O error in the message only, not as a source, which anyhow's
    // chain would print a second time.
    #[error("cannot read {what} {path}: {error}")]
    Open {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} {path} is a {kind}, not a regular file")]
    NotRegular {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{what} {path} is larger than {max} bytes: is it the right file?")]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        max: u64,
    },
    #[error("{path}:{line}:{column}: not UTF-8 text: {what}s are UTF-8 (is it the right file?)")]
    NotUtf8 {
        what: &'static str,
        path: PathBuf,
        line: usize,
        column: usize,
    },
}

/// A rule file's text.
pub fn read_rules(path: &Path) -> Result<String, FileError> {
    read_text(path, "rule file", MAX_RULE_FILE)
}

/// A list file's text.
pub(crate) fn read_list(path: &Path) -> Result<String, FileError> {
    read_text(path, "list file", MAX_LIST_FILE)
}

/// A rule file's bytes, read with the same care as `read_rules` but not
/// taken as text: for what only compares them (`serve`'s change check).
pub(crate) fn read_rule_bytes(path: &Path) -> Result<Vec<u8>, FileError> {
    read_bytes(path, "rule file", MAX_RULE_FILE)
}

fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "folder"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else {
        "special file"
    }
}

/// The text of a file read as untrusted input; `what` names it in errors
/// ("rule file"; replay's "expect file").
pub(crate) fn read_text(path: &Path, what: &'static str, max: u64) -> Result<String, FileError> {
    let bytes = read_bytes(path, what, max)?;
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..good]);
        let (line, column) = line_col(&text, good);
        FileError::NotUtf8 {
            what,
            path: path.to_path_buf(),
            line,
            column,
        }
    })
}

/// At most `max` bytes of a regular file; never waits for a writer.
fn read_bytes(path: &Path, what: &'static str, max: u64) -> Result<Vec<u8>, FileError> {
    let open_err = |error| FileError::Open {
        what,
        path: path.to_path_buf(),
        error,
    };
    // Non-blocking: opening a FIFO for reading would otherwise wait for a
    // writer. The type is checked on the open file, not on the name.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            what,
            path: path.to_path_buf(),
            kind: kind(meta.file_type()),
        });
    }
    let too_large = || FileError::TooLarge {
        what,
        path: path.to_path_buf(),
        max,
    };
    // Refused unread when its size says so; the cap on the read still
    // holds for files that grow, or whose size says nothing (/proc).
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(open_err)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flt-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn refuses_what_is_not_a_small_text_file() {
        let e = read_rules(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(
            e.contains("/dev/zero is a device, not a regular file"),
            "{e}"
        );
        let e = read_list(Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");

        let fifo = temp("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_list(&fifo).unwrap_err().to_string();
        assert!(e.contains("is a FIFO"), "{e}");
        std::fs::remove_file(&fifo).unwrap();

        let big = temp("big");
        std::fs::write(&big, vec![b'#'; MAX_RULE_FILE as usize + 1]).unwrap();
        let e = read_rules(&big).unwrap_err().to_string();
        assert!(e.contains("larger than 1048576 bytes"), "{e}");
        std::fs::remove_file(&big).unwrap();
    }

    #[test]
    fn rule_bytes_are_bounded_but_not_text() {
        let f = temp("bytes");
        std::fs::write(&f, b"ab\xffcd").unwrap();
        assert_eq!(read_rule_bytes(&f).unwrap(), b"ab\xffcd");
        // Sparse: refused by its size, without reading 256 MiB of zeros.
        File::create(&f).unwrap().set_len(256 << 20).unwrap();
        let e = read_rule_bytes(&f).unwrap_err().to_string();
        assert!(e.contains("larger than 1048576 bytes"), "{e}");
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn places_bad_utf8_and_never_quotes_it() {
        let f = temp("utf8");
        std::fs::write(&f, b"secret = 1\nab\xffcd\n").unwrap();
        let e = read_rules(&f).unwrap_err().to_string();
        assert!(
            e.ends_with(":2:3: not UTF-8 text: rule files are UTF-8 (is it the right file?)"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        std::fs::remove_file(&f).unwrap();
    }
}
