//! Where results go: stdout, or a file written beside its final name and renamed
//! into place only on success (no half-written signature is left behind).

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crate::args::parse_fd;
use crate::error::ShimError;

/// A file name as gpg reads it: `-` is stdin or stdout; with
/// `--enable-special-filenames`, `-&N` is the inherited descriptor N (GPGME
/// passes its data pipes so); anything else, `-&N` included when special file
/// names are off, is a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name<'a> {
    Std,
    Fd(i32),
    Path(&'a OsStr),
}

impl<'a> Name<'a> {
    pub fn of(name: &'a OsStr, special: bool) -> Name<'a> {
        if name == "-" {
            return Name::Std;
        }
        if special {
            // As gpg: only `-&` and decimal digits name a descriptor.
            let fd = name.as_bytes().strip_prefix(b"-&").and_then(|d| std::str::from_utf8(d).ok()).and_then(parse_fd);
            if let Some(fd) = fd {
                return Name::Fd(fd);
            }
        }
        Name::Path(name)
    }

    /// Is this a pipe rather than a named file (no default output name, no
    /// file name in a literal packet)?
    pub fn is_stream(self) -> bool {
        !matches!(self, Name::Path(_))
    }
}

/// Opens an inherited descriptor, through /proc (no unsafe). A number that is
/// not an open descriptor of this process is an error, never a guess.
pub fn open_fd(fd: i32, write: bool) -> Result<File, ShimError> {
    let path = format!("/proc/self/fd/{fd}");
    let res = if write { OpenOptions::new().write(true).open(&path) } else { File::open(&path) };
    res.map_err(|e| {
        let e = if e.kind() == io::ErrorKind::NotFound { io::Error::from_raw_os_error(9) } else { e };
        ShimError::Io(format!("can't open '-&{fd}'"), e)
    })
}

pub enum Output {
    Stdout(BufWriter<io::Stdout>),
    Fd(BufWriter<File>),
    File { tmp: BufWriter<tempfile::NamedTempFile>, path: PathBuf },
}

impl Output {
    /// `path` of `None` or `-` is stdout. An existing file is replaced only with `--yes`.
    /// File names are OS strings: any bytes but NUL, as gpg takes them.
    /// With `special`, `-&N` is descriptor N.
    pub fn create(path: Option<&OsStr>, yes: bool, special: bool) -> Result<Output, ShimError> {
        match path.map(|p| Name::of(p, special)) {
            None | Some(Name::Std) => Ok(Output::Stdout(BufWriter::with_capacity(256 * 1024, io::stdout()))),
            Some(Name::Fd(fd)) => Ok(Output::Fd(BufWriter::with_capacity(256 * 1024, open_fd(fd, true)?))),
            Some(Name::Path(p)) => {
                let path = PathBuf::from(p);
                if path.exists() && !yes {
                    return Err(ShimError::Usage(format!("File '{}' exists (use --yes to overwrite)", path.display())));
                }
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let tmp = tempfile::Builder::new()
                    .prefix(".qvault-gpg")
                    .tempfile_in(dir)
                    .map_err(ShimError::io(format!("cannot create a file in {}", dir.display())))?;
                Ok(Output::File { tmp: BufWriter::with_capacity(256 * 1024, tmp), path })
            }
        }
    }

    pub fn commit(self) -> Result<(), ShimError> {
        match self {
            Output::Stdout(mut w) => w.flush().map_err(ShimError::io("writing to stdout")),
            Output::Fd(mut w) => w.flush().map_err(ShimError::io("writing output")),
            Output::File { tmp, path } => {
                let tmp = tmp.into_inner().map_err(|e| ShimError::Io(path.display().to_string(), e.into_error()))?;
                use std::os::unix::fs::PermissionsExt as _;
                // Signatures are public: the usual 0644 (less the umask), not the temp file's 0600.
                let _ = tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644 & !umask_guess()));
                tmp.persist(&path).map_err(|e| ShimError::Io(path.display().to_string(), e.error))?;
                Ok(())
            }
        }
    }
}

/// The umask, read without changing it (Linux reports it in /proc/self/status).
fn umask_guess() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_owned())))
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::Fd(w) => w.write(buf),
            Output::File { tmp, .. } => tmp.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.write_all(buf),
            Output::Fd(w) => w.write_all(buf),
            Output::File { tmp, .. } => tmp.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::Fd(w) => w.flush(),
            Output::File { tmp, .. } => tmp.flush(),
        }
    }
}

/// The input: stdin, a descriptor (with `special`) or a file.
pub fn open_input(operands: &[OsString], special: bool) -> Result<Box<dyn io::Read + Send + Sync>, ShimError> {
    match operands {
        [] => Ok(Box::new(io::stdin())),
        [one] => open_name(one, special),
        _ => Err(ShimError::Usage("only one file may be signed at a time".into())),
    }
}

/// Opens one input by name, as gpg does.
pub fn open_name(name: &OsStr, special: bool) -> Result<Box<dyn io::Read + Send + Sync>, ShimError> {
    match Name::of(name, special) {
        Name::Std => Ok(Box::new(io::stdin())),
        Name::Fd(fd) => Ok(Box::new(open_fd(fd, false)?)),
        Name::Path(p) => Ok(Box::new(open_file(p)?)),
    }
}

/// Opens a named input file, with gpg's message on failure.
pub fn open_file(name: &OsStr) -> Result<File, ShimError> {
    File::open(name).map_err(ShimError::io(format!("can't open '{}'", Path::new(name).display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_names_only_when_enabled() {
        let n = OsStr::new("-&7");
        assert_eq!(Name::of(n, true), Name::Fd(7));
        assert_eq!(Name::of(n, false), Name::Path(n));
        assert_eq!(Name::of(OsStr::new("-"), false), Name::Std);
        for path in ["-&", "-&x", "-&-1", "-&7 ", "-&99999999999", "&7", "--&7"] {
            assert_eq!(Name::of(OsStr::new(path), true), Name::Path(OsStr::new(path)), "{path}");
        }
    }

    #[test]
    fn a_closed_descriptor_is_an_error() {
        let e = open_fd(i32::MAX, false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("can't open '-&2147483647'"), "{e}");
    }
}
