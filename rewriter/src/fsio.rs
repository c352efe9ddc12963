//! Writing outputs atomically: a temporary file in the destination's folder,
//! fully written and synced, given the input's mode (and, where we may, its
//! owner), then renamed over the destination. On any failure the temporary
//! file is removed and the destination is untouched.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode and owner to give an output: those of the input it replaces.
#[derive(Clone, Copy, Debug)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Attrs {
    pub fn of(f: &File) -> io::Result<Attrs> {
        use std::os::unix::fs::MetadataExt;
        let m = f.metadata()?;
        Ok(Attrs { mode: m.mode(), uid: m.uid(), gid: m.gid() })
    }
}

pub fn write_atomic(dest: &Path, attrs: Attrs, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name =
        dest.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"))?;
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
        // Owner first (changing it clears set-id bits), then the mode. Only
        // root may give a file away; for anyone else the owner is already right.
        let _ = std::os::unix::fs::fchown(&file, Some(attrs.uid), Some(attrs.gid));
        file.set_permissions(Permissions::from_mode(attrs.mode & 0o7777))?;
        file.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Where an in-place write goes: through symbolic links, so that patching
/// `/usr/bin/python3 -> python3.11` patches the file and keeps the link.
pub fn in_place_target(path: &Path) -> io::Result<PathBuf> {
    fs::canonicalize(path)
}
