//! Where results go: stdout, or a file written beside its final name and renamed
//! into place only on success (no half-written signature is left behind).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::ShimError;

pub enum Output {
    Stdout(BufWriter<io::Stdout>),
    File { tmp: BufWriter<tempfile::NamedTempFile>, path: PathBuf },
}

impl Output {
    /// `path` of `None` or `-` is stdout. An existing file is replaced only with `--yes`.
    /// File names are OS strings: any bytes but NUL, as gpg takes them.
    pub fn create(path: Option<&OsStr>, yes: bool) -> Result<Output, ShimError> {
        match path {
            None => Ok(Output::Stdout(BufWriter::with_capacity(256 * 1024, io::stdout()))),
            Some(p) if p == "-" => Ok(Output::Stdout(BufWriter::with_capacity(256 * 1024, io::stdout()))),
            Some(p) => {
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
            Output::File { tmp, .. } => tmp.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.write_all(buf),
            Output::File { tmp, .. } => tmp.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File { tmp, .. } => tmp.flush(),
        }
    }
}

/// The input: stdin or a file.
pub fn open_input(operands: &[OsString]) -> Result<Box<dyn io::Read>, ShimError> {
    match operands {
        [] => Ok(Box::new(io::stdin())),
        [one] if one == "-" => Ok(Box::new(io::stdin())),
        [one] => Ok(Box::new(open_file(one)?)),
        _ => Err(ShimError::Usage("only one file may be signed at a time".into())),
    }
}

/// Opens a named input file, with gpg's message on failure.
pub fn open_file(name: &OsStr) -> Result<File, ShimError> {
    File::open(name).map_err(ShimError::io(format!("can't open '{}'", Path::new(name).display())))
}
