//! [`PowerCutDisk`]: an in-memory [`Disk`] for tests that loses what a power cut loses
//!
//! A `kill -9` keeps the page cache, so a test that only kills processes cannot see a
//! missing `fdatasync` or directory sync. This disk keeps two views of everything:
//!
//! - each file's content as written, and its content as of its last sync;
//! - each directory's names as they are, and as of the directory's last sync.
//!
//! [`power_cut`](PowerCutDisk::power_cut) turns the disk off: every call fails, through any
//! handle, until [`power_on`](PowerCutDisk::power_on) brings back the synced views only (names
//! as of each directory's last sync, content as of each file's last sync), with what was
//! written since torn in as a real disk might keep it (see [`Cut`]). Handles opened before the
//! cut keep failing after it, so a dying thread cannot write into the next boot.
//!
//! [`fail`](PowerCutDisk::fail) injects `ENOSPC` or `EIO` on writes or syncs until
//! [`heal`](PowerCutDisk::heal); a failed sync makes nothing durable.
//!
//! ```
//! use std::path::Path;
//! use shale_runtime_std::storage::{Cut, Disk, PowerCutDisk};
//!
//! let disk = PowerCutDisk::new(7);
//! disk.create_dir_all(Path::new("/d")).unwrap();
//! disk.sync_dir(Path::new("/")).unwrap();
//! let mut file = disk.create(Path::new("/d/f")).unwrap();
//! file.write_at(0, b"synced").unwrap();
//! file.sync().unwrap();
//! disk.sync_dir(Path::new("/d")).unwrap();
//! file.write_at(6, b" and not").unwrap();
//! disk.power_cut(Cut::LoseUnsynced);
//! assert!(file.write_at(0, b"late").is_err());
//! disk.power_on();
//! assert_eq!(disk.read(Path::new("/d/f")).unwrap(), b"synced");
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use shale_core::rng::Rng;

use super::disk::{Disk, DiskFile, parent_dir};

/// Sector size of the simulated disk, in bytes: the unit in which unsynced writes are torn
pub const POWER_CUT_SECTOR_BYTES: usize = 512;

/// What a power cut keeps of the bytes written since a file's last sync
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Nothing: every file is back to its last synced content
    LoseUnsynced,
    /// A seeded choice per file: nothing, everything, a prefix of sectors, or per sector the
    /// old bytes, the new ones or new ones up to a point and old ones after it; and the old or
    /// the new length
    Tear,
}

/// Which calls an injected fault hits
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOn {
    /// Writes: positioned writes, extending `set_len`, creating files and directories
    Write,
    /// File and directory syncs
    Sync,
}

/// The error an injected fault returns
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `ENOSPC`: no space left on the device
    NoSpace,
    /// `EIO`: an input/output error
    Io,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::NoSpace => io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ),
            Fault::Io => io::Error::other("input/output error (injected)"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    File(u64),
    Dir,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug)]
struct State {
    on: bool,
    boot: u64,
    rng: Rng,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, Name>,
    synced_names: BTreeMap<PathBuf, Name>,
    locks: BTreeSet<PathBuf>,
    faults: BTreeMap<FaultOnKey, Fault>,
    pending_cut: Option<Cut>,
}

type FaultOnKey = u8;

fn key(on: FaultOn) -> FaultOnKey {
    match on {
        FaultOn::Write => 0,
        FaultOn::Sync => 1,
    }
}

fn powered_off() -> io::Error {
    io::Error::other("the disk lost power (simulated power cut)")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl State {
    fn check(&self, boot: u64) -> io::Result<()> {
        if self.on && self.boot == boot {
            Ok(())
        } else {
            Err(powered_off())
        }
    }

    fn fault(&self, on: FaultOn) -> io::Result<()> {
        match self.faults.get(&key(on)) {
            Some(f) => Err(f.error()),
            None => Ok(()),
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        dir.parent().is_none() || self.names.get(dir) == Some(&Name::Dir)
    }

    fn file(&self, path: &Path) -> io::Result<u64> {
        match self.names.get(path) {
            Some(Name::File(inode)) => Ok(*inode),
            _ => Err(not_found(path)),
        }
    }

    fn new_file(&mut self, path: &Path) -> io::Result<u64> {
        if !self.dir_exists(&parent_dir(path)) {
            return Err(not_found(&parent_dir(path)));
        }
        let inode = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(inode, Inode::default());
        self.names.insert(path.to_path_buf(), Name::File(inode));
        Ok(inode)
    }

    /// What a file keeps of its unsynced bytes through a cut
    fn torn(&mut self, old: &[u8], new: &[u8], cut: Cut) -> Vec<u8> {
        if old == new || cut == Cut::LoseUnsynced {
            return old.to_vec();
        }
        let len = if self.below(2) == 0 {
            old.len()
        } else {
            new.len()
        };
        let sectors = len.div_ceil(POWER_CUT_SECTOR_BYTES);
        let mode = self.below(4);
        let prefix = self.below(sectors as u64 + 1) as usize;
        let mut out = vec![0; len];
        for s in 0..sectors {
            let start = s * POWER_CUT_SECTOR_BYTES;
            let end = (start + POWER_CUT_SECTOR_BYTES).min(len);
            // Bytes of the sector from `new` before `split`, from `old` after it: all old, all
            // new, or (mode 3) a version in between, as when a page went to the disk after one
            // append to it and before the next.
            let split = match mode {
                0 => start,
                1 => end,
                2 if s < prefix => end,
                2 => start,
                _ => match self.below(3) {
                    0 => start,
                    1 => end,
                    _ => start + self.below((end - start) as u64 + 1) as usize,
                },
            };
            for (i, byte) in out[start..end].iter_mut().enumerate() {
                let from = if start + i < split { new } else { old };
                *byte = from.get(start + i).copied().unwrap_or(0);
            }
        }
        out
    }
}

/// An in-memory [`Disk`] that loses unsynced writes at a simulated power cut and fails
/// writes or syncs on demand (see the [module docs](self)); cheap to clone, clones share the
/// disk
#[derive(Clone)]
pub struct PowerCutDisk {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for PowerCutDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PowerCutDisk").finish_non_exhaustive()
    }
}

impl PowerCutDisk {
    /// An empty, powered disk; `seed` decides how cuts tear unsynced writes
    pub fn new(seed: u64) -> PowerCutDisk {
        PowerCutDisk {
            state: Arc::new(Mutex::new(State {
                on: true,
                boot: 0,
                rng: Rng::new(seed),
                next_inode: 1,
                inodes: HashMap::new(),
                names: BTreeMap::new(),
                synced_names: BTreeMap::new(),
                locks: BTreeSet::new(),
                faults: BTreeMap::new(),
                pending_cut: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power: from now until [`power_on`](Self::power_on) every call fails, and
    /// handles opened before it fail for good; `cut` says what survives of unsynced writes
    pub fn power_cut(&self, cut: Cut) {
        let mut s = self.lock();
        s.on = false;
        s.pending_cut = Some(cut);
    }

    /// Powers the disk back on with what survived the last [`power_cut`](Self::power_cut)
    /// (nothing changes if there was none): synced names, synced content with unsynced
    /// writes torn in; locks are released, faults stay
    pub fn power_on(&self) {
        let mut s = self.lock();
        if let Some(cut) = s.pending_cut.take() {
            // A name survives only if every directory above it survived too.
            let mut names = s.synced_names.clone();
            loop {
                let orphans: Vec<PathBuf> = names
                    .keys()
                    .filter(|p| {
                        let parent = parent_dir(p);
                        parent.parent().is_some() && names.get(&parent) != Some(&Name::Dir)
                    })
                    .cloned()
                    .collect();
                if orphans.is_empty() {
                    break;
                }
                for p in orphans {
                    names.remove(&p);
                }
            }
            s.synced_names = names.clone();
            let mut inodes = HashMap::new();
            for name in names.values() {
                let Name::File(id) = *name else { continue };
                if inodes.contains_key(&id) {
                    continue;
                }
                let Some(inode) = s.inodes.remove(&id) else {
                    continue;
                };
                let kept = s.torn(&inode.synced, &inode.data, cut);
                inodes.insert(
                    id,
                    Inode {
                        data: kept.clone(),
                        synced: kept,
                    },
                );
            }
            s.inodes = inodes;
            s.names = names;
            s.locks.clear();
            s.boot += 1;
        }
        s.on = true;
    }

    /// From now on, calls of kind `on` fail with `fault`, until [`heal`](Self::heal)
    pub fn fail(&self, on: FaultOn, fault: Fault) {
        self.lock().faults.insert(key(on), fault);
    }

    /// Ends every injected fault
    pub fn heal(&self) {
        self.lock().faults.clear();
    }

    /// Bytes written to files but not yet synced, summed over the files that exist now
    pub fn unsynced_bytes(&self) -> u64 {
        let s = self.lock();
        s.inodes
            .values()
            .map(|i| {
                let same = i
                    .data
                    .iter()
                    .zip(&i.synced)
                    .take_while(|(a, b)| a == b)
                    .count();
                (i.data.len().max(i.synced.len()) - same) as u64
            })
            .sum()
    }
}

#[derive(Debug)]
struct MemFile {
    disk: PowerCutDisk,
    inode: u64,
    boot: u64,
}

impl MemFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.disk.lock();
        s.check(self.boot)?;
        f(&mut s, self.inode)
    }
}

fn inode(s: &mut State, id: u64) -> io::Result<&mut Inode> {
    s.inodes
        .get_mut(&id)
        .ok_or_else(|| io::Error::other("file was lost"))
}

impl DiskFile for MemFile {
    fn size(&self) -> io::Result<u64> {
        self.with(|s, id| Ok(inode(s, id)?.data.len() as u64))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with(|s, id| {
            let data = &inode(s, id)?.data;
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            match start
                .checked_add(buf.len())
                .and_then(|end| data.get(start..end))
            {
                Some(bytes) => {
                    buf.copy_from_slice(bytes);
                    Ok(())
                }
                None => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            }
        })
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.with(|s, id| {
            s.fault(FaultOn::Write)?;
            let data = &mut inode(s, id)?.data;
            let start = offset as usize;
            let end = start + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[start..end].copy_from_slice(bytes);
            Ok(())
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with(|s, id| {
            if len > inode(s, id)?.data.len() as u64 {
                s.fault(FaultOn::Write)?;
            }
            inode(s, id)?.data.resize(len as usize, 0);
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.with(|s, id| {
            s.fault(FaultOn::Sync)?;
            let i = inode(s, id)?;
            i.synced = i.data.clone();
            Ok(())
        })
    }
}

#[derive(Debug)]
struct LockGuard {
    disk: PowerCutDisk,
    path: PathBuf,
    boot: u64,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut s = self.disk.lock();
        if s.boot == self.boot {
            s.locks.remove(&self.path);
        }
    }
}

impl PowerCutDisk {
    fn handle(&self, inode: u64, boot: u64) -> Box<dyn DiskFile> {
        Box::new(MemFile {
            disk: self.clone(),
            inode,
            boot,
        })
    }

    fn powered(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = self.lock();
        if s.on { Ok(s) } else { Err(powered_off()) }
    }
}

impl Disk for PowerCutDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut s = self.powered()?;
        s.fault(FaultOn::Write)?;
        let id = match s.names.get(path) {
            Some(Name::File(id)) => {
                let id = *id;
                inode(&mut s, id)?.data.clear();
                id
            }
            Some(Name::Dir) => return Err(io::Error::other("is a directory")),
            None => s.new_file(path)?,
        };
        let boot = s.boot;
        Ok(self.handle(id, boot))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let s = self.powered()?;
        let id = s.file(path)?;
        let boot = s.boot;
        Ok(self.handle(id, boot))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut s = self.powered()?;
        let id = s.file(path)?;
        Ok(inode(&mut s, id)?.data.clone())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.powered()?;
        if !s.dir_exists(dir) {
            return Err(not_found(dir));
        }
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.lock();
        s.on && (path.parent().is_none() || s.names.contains_key(path))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.powered()?;
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|a| a.parent().is_some() && !a.as_os_str().is_empty())
            .filter(|a| !s.names.contains_key(*a))
            .map(Path::to_path_buf)
            .collect();
        if !missing.is_empty() {
            s.fault(FaultOn::Write)?;
        }
        for d in missing {
            s.names.insert(d, Name::Dir);
        }
        match s.names.get(dir) {
            Some(Name::File(_)) => Err(io::Error::other("not a directory")),
            _ => Ok(()),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.powered()?;
        let id = s.file(from)?;
        if !s.dir_exists(&parent_dir(to)) {
            return Err(not_found(to));
        }
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), Name::File(id));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.powered()?;
        s.file(path)?;
        s.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.powered()?;
        s.fault(FaultOn::Sync)?;
        if !s.dir_exists(dir) {
            return Err(not_found(dir));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        let now: Vec<(PathBuf, Name)> = s
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        s.synced_names.retain(|p, _| !in_dir(p));
        s.synced_names.extend(now);
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn fmt::Debug + Send + Sync>>> {
        let mut s = self.powered()?;
        if !s.names.contains_key(path) {
            s.new_file(path)?;
        }
        if !s.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        let boot = s.boot;
        Ok(Some(Box::new(LockGuard {
            disk: self.clone(),
            path: path.to_path_buf(),
            boot,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced_dir(disk: &PowerCutDisk, dir: &str) {
        disk.create_dir_all(Path::new(dir)).unwrap();
        disk.sync_dir(&parent_dir(Path::new(dir))).unwrap();
    }

    #[test]
    fn a_file_whose_name_was_never_synced_is_lost_even_if_its_data_was() {
        let disk = PowerCutDisk::new(1);
        synced_dir(&disk, "/d");
        let mut f = disk.create(Path::new("/d/f")).unwrap();
        f.write_at(0, b"data").unwrap();
        f.sync().unwrap();
        disk.power_cut(Cut::Tear);
        disk.power_on();
        assert!(!disk.exists(Path::new("/d/f")));
    }

    #[test]
    fn files_in_a_directory_whose_name_was_never_synced_are_lost() {
        let disk = PowerCutDisk::new(4);
        disk.create_dir_all(Path::new("/d/e")).unwrap();
        // "/d" is synced in "/", but "/d/e" never is in "/d".
        disk.sync_dir(Path::new("/")).unwrap();
        let mut f = disk.create(Path::new("/d/e/f")).unwrap();
        f.write_at(0, b"data").unwrap();
        f.sync().unwrap();
        disk.sync_dir(Path::new("/d/e")).unwrap();
        disk.power_cut(Cut::LoseUnsynced);
        disk.power_on();
        assert!(disk.exists(Path::new("/d")));
        assert!(!disk.exists(Path::new("/d/e")));
        assert!(!disk.exists(Path::new("/d/e/f")));
    }

    #[test]
    fn a_rename_not_synced_in_its_directory_is_undone() {
        let disk = PowerCutDisk::new(2);
        synced_dir(&disk, "/d");
        for (name, data) in [("/d/a", b"old"), ("/d/a.tmp", b"new")] {
            let mut f = disk.create(Path::new(name)).unwrap();
            f.write_at(0, data).unwrap();
            f.sync().unwrap();
        }
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.rename(Path::new("/d/a.tmp"), Path::new("/d/a"))
            .unwrap();
        assert_eq!(disk.read(Path::new("/d/a")).unwrap(), b"new");
        disk.power_cut(Cut::LoseUnsynced);
        disk.power_on();
        assert_eq!(disk.read(Path::new("/d/a")).unwrap(), b"old");
        assert!(disk.exists(Path::new("/d/a.tmp")));
    }

    #[test]
    fn torn_writes_keep_synced_bytes_and_only_written_bytes_or_zeros_after_them() {
        for seed in 0..200 {
            let disk = PowerCutDisk::new(seed);
            synced_dir(&disk, "/d");
            let mut f = disk.create(Path::new("/d/f")).unwrap();
            f.write_at(0, &[1; 700]).unwrap();
            f.sync().unwrap();
            disk.sync_dir(Path::new("/d")).unwrap();
            f.write_at(700, &[2; 2000]).unwrap();
            disk.power_cut(Cut::Tear);
            disk.power_on();
            let after = disk.read(Path::new("/d/f")).unwrap();
            assert!(after.len() == 700 || after.len() == 2700, "seed {seed}");
            assert_eq!(&after[..700], &[1; 700][..], "seed {seed}");
            assert!(
                after[700..].iter().all(|b| *b == 0 || *b == 2),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn injected_faults_fail_their_calls_until_healed_and_handles_die_with_the_power() {
        let disk = PowerCutDisk::new(3);
        synced_dir(&disk, "/d");
        let mut f = disk.create(Path::new("/d/f")).unwrap();
        disk.fail(FaultOn::Sync, Fault::Io);
        f.write_at(0, b"x").unwrap();
        assert!(f.sync().is_err());
        disk.fail(FaultOn::Write, Fault::NoSpace);
        let e = f.write_at(1, b"y").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        disk.heal();
        f.write_at(1, b"y").unwrap();
        f.sync().unwrap();
        disk.power_cut(Cut::LoseUnsynced);
        assert!(disk.read(Path::new("/d/f")).is_err());
        disk.power_on();
        assert!(f.sync().is_err(), "a handle of the last boot works");
    }
}
