//! What storage needs from a file system: [`Disk`] and its open files, [`DiskFile`]
//!
//! [`StdDisk`] is the real file system. Tests put [`PowerCutDisk`](super::PowerCutDisk) in
//! its place: it keeps what was synced apart from what was only written, so a simulated power
//! cut loses exactly what a real one could, and it can fail writes and syncs on demand.
//!
//! The calls are the ones the storage makes, no more: whole-file reads, positioned reads and
//! writes, `set_len`, `fdatasync`, directory listing, creation, renames, removals, directory
//! syncs and an exclusive lock. Every call that changes something is undone by a power cut
//! unless a sync made it durable first: a file's data and size by syncing the file, a file's
//! name (creation, rename, removal) by syncing its directory.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// A file system the storage runs on (see the [module docs](self))
pub trait Disk: Send + Sync + fmt::Debug {
    /// Creates `path` empty (truncating what was there) and opens it for reads and writes
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens the existing file `path` for reads and writes (`NotFound` if absent)
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// The whole content of `path` (`NotFound` if absent)
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The names of the files in `dir`
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` names a file or directory
    fn exists(&self, path: &Path) -> bool;
    /// Creates `dir` and its missing parents (not durable until each parent is synced)
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Renames `from` over `to` atomically
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path` (`NotFound` if absent)
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals of names in `dir` durable
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (creating the file), held until the guard drops;
    /// `Ok(None)` when someone else holds it
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn fmt::Debug + Send + Sync>>>;
}

/// An open file of a [`Disk`]
pub trait DiskFile: Send + Sync + fmt::Debug {
    /// Its size in bytes
    fn size(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset` (`UnexpectedEof` past the end)
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file (with zeros) as needed
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Cuts or extends (with zeros) the file to `len` bytes
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes its data and size durable (`fdatasync`)
    fn sync(&mut self) -> io::Result<()>;
}

/// The real file system, through `std::fs`
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDisk;

#[derive(Debug)]
struct StdFile(File);

impl DiskFile for StdFile {
    fn size(&self) -> io::Result<u64> {
        self.0.metadata().map(|m| m.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut file = &self.0;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.write_all(data)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Disk for StdDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for item in fs::read_dir(dir)? {
            if let Some(name) = item?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn fmt::Debug + Send + Sync>>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The directory `path` is in (`.` for a bare name)
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}
