//! Writing outputs atomically: a temporary file in the destination's folder,
//! fully written and synced, given the wanted mode, then renamed over the
//! destination. On any failure the temporary file is removed and the
//! destination is untouched.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub fn write_atomic(dest: &Path, mode: u32, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"))?;
    let mut tmp = dir.join(format!(".{}.dfpatch-{}.tmp", name.to_string_lossy(), std::process::id()));
    let mut n = 0;
    let file = loop {
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp) {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => {
                n += 1;
                tmp = dir.join(format!(".{}.dfpatch-{}-{n}.tmp", name.to_string_lossy(), std::process::id()));
            }
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, &file);
        write(&mut w)?;
        w.flush()?;
        drop(w);
        file.set_permissions(Permissions::from_mode(mode & 0o7777))?;
        file.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Mode bits of an existing file.
pub fn mode_of(f: &File) -> io::Result<u32> {
    Ok(f.metadata()?.permissions().mode())
}
