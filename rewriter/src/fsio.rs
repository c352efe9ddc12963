//! Writing outputs atomically: a temporary file in the destination's folder,
//! fully written and synced, given the input's mode (and, where we may, its
//! owner) and its extended attributes, then renamed over the destination. On
//! any failure the temporary file is removed and the destination is untouched.
//!
//! Extended attributes are kept whole or not at all: an attribute the new file
//! cannot be given (`security.capability` when not root, say) is an error, so
//! patching `ping` in place never leaves a `ping` without its `cap_net_raw`.

use rustix::fs::XattrFlags;
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode, owner and extended attributes to give an output: those of the input it replaces.
#[derive(Clone, Debug)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Every extended attribute the caller may read (`trusted.*` only for
    /// root), name and value, in the order the file system lists them.
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

impl Attrs {
    pub fn of(f: &File) -> io::Result<Attrs> {
        use std::os::unix::fs::MetadataExt;
        let m = f.metadata()?;
        Ok(Attrs { mode: m.mode(), uid: m.uid(), gid: m.gid(), xattrs: xattrs_of(f)? })
    }
}

/// The extended attributes of `f`; none on a file system without them.
fn xattrs_of(f: &File) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let names = match sized(|| rustix::fs::flistxattr_query(f), |buf| rustix::fs::flistxattr(f, buf)) {
        Ok(names) => names,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot list extended attributes ({e})"))),
    };
    let mut xattrs = Vec::new();
    // The list is NUL-terminated names one after the other.
    for name in names.split_inclusive(|&b| b == 0) {
        let Ok(name) = CStr::from_bytes_with_nul(name) else { continue };
        match sized(|| rustix::fs::fgetxattr_query(f, name), |buf| rustix::fs::fgetxattr(f, name, buf)) {
            Ok(value) => xattrs.push((name.to_owned(), value)),
            // Removed since it was listed.
            Err(Errno::NODATA) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read extended attribute {} ({e})", name.to_string_lossy()),
                ))
            }
        }
    }
    Ok(xattrs)
}

/// Reads a list or value that the kernel sizes first: asks for the size,
/// reads into a buffer of it, and again if it grew in between (ERANGE).
fn sized(
    size: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    loop {
        let n = size()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0; n];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Gives `file` every attribute of `xattrs`. One it already has with the same
/// value (a security label its folder gave it) is left alone; one that cannot
/// be set is an error naming it.
fn set_xattrs(file: &File, xattrs: &[(CString, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in xattrs {
        let has = sized(|| rustix::fs::fgetxattr_query(file, name), |buf| rustix::fs::fgetxattr(file, name, buf));
        if has.as_ref() == Ok(value) {
            continue;
        }
        if let Err(e) = rustix::fs::fsetxattr(file, name, value, XattrFlags::empty()) {
            let name = name.to_string_lossy();
            let why = match e {
                Errno::PERM if !name.starts_with("user.") => " (only root may set it)",
                _ => "",
            };
            return Err(io::Error::new(
                e.kind(),
                format!("cannot keep extended attribute {name}{why}: {e}; nothing was written"),
            ));
        }
    }
    Ok(())
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
        // Extended attributes last: the chown above clears security.capability.
        set_xattrs(&file, &attrs.xattrs)?;
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
