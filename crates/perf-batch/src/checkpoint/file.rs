//! The file checkpoint store: one file per segment, written to a temporary name, fsynced,
//! renamed into place and made durable with an fsync of the directory.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{validate_job_id, CheckpointStore};
use crate::error::{BatchError, Result};

const SUFFIX: &str = ".ckpt";

/// Stores checkpoints under a directory: `<root>/<job>/<seq>.ckpt`.
///
/// A segment is written to `<seq>.ckpt.tmp`, fsynced, renamed and the directory fsynced, so a
/// crash at any point leaves either the whole segment or none of it (leftover `.tmp` files are
/// ignored by [`load`](CheckpointStore::load)).
///
/// ```
/// use perf_batch::checkpoint::{CheckpointStore, FileCheckpointStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = FileCheckpointStore::new(dir.path());
/// store.append("job-1", 0, b"segment".to_vec()).await.unwrap();
/// assert_eq!(store.load("job-1").await.unwrap(), vec![(0, b"segment".to_vec())]);
/// store.clear("job-1").await.unwrap();
/// assert!(store.load("job-1").await.unwrap().is_empty());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    root: Arc<PathBuf>,
}

impl FileCheckpointStore {
    /// A store under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: Arc::new(root.into()),
        }
    }

    /// The directory of one job.
    pub fn job_dir(&self, job: &str) -> PathBuf {
        self.root.join(job)
    }
}

fn io_err(job: &str, what: &str, path: &Path, e: std::io::Error) -> BatchError {
    BatchError::CheckpointStore {
        store: "file",
        job: job.to_owned(),
        reason: format!("{what} {}: {e}", path.display()),
    }
}

fn sync_dir(job: &str, dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(job, "cannot fsync directory", dir, e))
}

fn append_blocking(root: &Path, job: &str, seq: u64, segment: &[u8]) -> Result<()> {
    let dir = root.join(job);
    if !dir.exists() {
        fs::create_dir_all(&dir).map_err(|e| io_err(job, "cannot create", &dir, e))?;
        sync_dir(job, root)?;
    }
    let name = format!("{seq:020}{SUFFIX}");
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(&name);
    let mut file = File::create(&tmp).map_err(|e| io_err(job, "cannot create", &tmp, e))?;
    file.write_all(segment)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err(job, "cannot write", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| io_err(job, "cannot rename", &tmp, e))?;
    sync_dir(job, &dir)
}

fn load_blocking(root: &Path, job: &str) -> Result<Vec<(u64, Vec<u8>)>> {
    let dir = root.join(job);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(job, "cannot list", &dir, e)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(job, "cannot list", &dir, e))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            // Temporary files of an interrupted write and foreign files are not segments.
            continue;
        };
        let path = entry.path();
        let bytes = fs::read(&path).map_err(|e| io_err(job, "cannot read", &path, e))?;
        segments.push((seq, bytes));
    }
    segments.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(segments)
}

fn clear_blocking(root: &Path, job: &str) -> Result<()> {
    let dir = root.join(job);
    match fs::remove_dir_all(&dir) {
        Ok(()) => sync_dir(job, root),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(job, "cannot remove", &dir, e)),
    }
}

async fn blocking<T: Send + 'static>(
    job: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BatchError::CheckpointStore {
            store: "file",
            job: job.to_owned(),
            reason: format!("file I/O task failed: {e}"),
        })?
}

#[async_trait]
impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, job: &str) -> Result<Vec<(u64, Vec<u8>)>> {
        validate_job_id(job)?;
        let (root, j) = (self.root.clone(), job.to_owned());
        blocking(job, move || load_blocking(&root, &j)).await
    }

    async fn append(&self, job: &str, seq: u64, segment: Vec<u8>) -> Result<()> {
        validate_job_id(job)?;
        let (root, j) = (self.root.clone(), job.to_owned());
        blocking(job, move || append_blocking(&root, &j, seq, &segment)).await
    }

    async fn clear(&self, job: &str) -> Result<()> {
        validate_job_id(job)?;
        let (root, j) = (self.root.clone(), job.to_owned());
        blocking(job, move || clear_blocking(&root, &j)).await
    }
}
