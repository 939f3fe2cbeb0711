//! `orgplane restore`: seeds the data dir of one node of a new cluster from a backup file
//! (written by `orgctl backup`).
//!
//! How the new cluster forms (etcd's `snapshot restore` model): every member is restored from
//! the same file with the same `--peers`, so they all start identical: the same state at the
//! backup's index, the same membership (exactly `--peers`, all voters), no log and no vote.
//! Then `orgplane node` with those `--peers` on each data dir forms the cluster: the nodes see
//! an initialized store, so none proposes an initial membership, and they elect a leader at a
//! term above the restored entry's. Without `--node-id`/`--peers` the restore leaves the
//! membership to the node's first start: `orgplane node --peers ...` on the data dir makes its
//! own `--peers` the new cluster's voters (`orgplane_store_sled::finish_restore`), so
//! `orgplane restore --region R --from FILE --data-dir DIR` needs no flag beyond those three.
//! To grow the cluster later, start empty nodes with `--join`
//! and add them with `orgctl cluster add-node`; they catch up from a snapshot. Restoring a
//! single node with `--peers` naming only itself and adding the others that way works too.
//!
//! Everything is checked before anything is written: the peers, an empty (or absent) data dir,
//! the file's magic, checksums and format version, and that the backup is of the region named.
//! A refusal leaves the data dir as it was.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use orgplane_backup::{BackupFileError, BackupHeader};
use orgplane_model::Region;
use orgplane_store_sled::{SeededStore, StoreError};

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// The region the backup must be of.
    pub region: Region,
    /// The backup file.
    pub from: PathBuf,
    /// The new node's data dir: absent or empty.
    pub data_dir: PathBuf,
    /// The new cluster, when the restore names it; `None` leaves it to the node's first start
    /// (`orgplane node --peers ...` on this data dir).
    pub cluster: Option<NewCluster>,
}

/// The new cluster a restored node belongs to.
#[derive(Debug, Clone)]
pub struct NewCluster {
    /// The new node's id; one of `peers`.
    pub node_id: u64,
    /// Every voter of the new cluster: node id -> `host:port` the others reach it at.
    pub peers: BTreeMap<u64, String>,
}

/// Why a restore was refused or failed. Each refusal leaves the data dir as it was.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("--node-id {node_id} is not one of --peers ({known})")]
    NodeNotInPeers { node_id: u64, known: String },
    #[error("data dir {} is not empty; restore only into a new or empty directory", .dir.display())]
    DataDirNotEmpty { dir: PathBuf },
    #[error("data dir {}: {source}", .dir.display())]
    DataDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot open the backup {}: {source}", .path.display())]
    OpenBackup { path: PathBuf, source: std::io::Error },
    #[error("backup {} refused: {source}", .path.display())]
    Backup { path: PathBuf, source: BackupFileError },
    #[error("backup {} is of region {found}, not {requested}; a region is restored only from its own backup", .path.display())]
    WrongRegion { path: PathBuf, found: Region, requested: Region },
    #[error("cannot seed the store in {}: {source}", .dir.display())]
    Store { dir: PathBuf, source: StoreError },
}

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The backup's header: what the new node now holds a copy of.
    pub header: BackupHeader,
    pub seeded: SeededStore,
}

/// Restores one node's data dir (see the module docs).
pub fn restore(config: &RestoreConfig) -> Result<Restored, RestoreError> {
    if let Some(cluster) = &config.cluster {
        if !cluster.peers.contains_key(&cluster.node_id) {
            let known = cluster.peers.keys().map(u64::to_string).collect::<Vec<_>>().join(", ");
            return Err(RestoreError::NodeNotInPeers { node_id: cluster.node_id, known });
        }
    }
    let dir = &config.data_dir;
    let existed = check_empty_or_absent(dir)?;
    let path = &config.from;
    let file = File::open(path).map_err(|source| RestoreError::OpenBackup { path: path.clone(), source })?;
    let (summary, data) =
        orgplane_backup::read_backup(file).map_err(|source| RestoreError::Backup { path: path.clone(), source })?;
    let header = summary.header;
    if header.region != config.region {
        return Err(RestoreError::WrongRegion { path: path.clone(), found: header.region, requested: config.region });
    }
    std::fs::create_dir_all(dir).map_err(|source| RestoreError::DataDir { dir: dir.clone(), source })?;
    let voters = config.cluster.as_ref().map(|cluster| &cluster.peers);
    match orgplane_store_sled::seed_from_backup(dir, &header.data_format, &data, voters) {
        Ok(seeded) => Ok(Restored { header, seeded }),
        Err(source) => {
            undo(dir, existed);
            Err(RestoreError::Store { dir: dir.clone(), source })
        }
    }
}

/// Whether `dir` exists; refuses one that holds anything (or is not a directory).
fn check_empty_or_absent(dir: &Path) -> Result<bool, RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(true),
            Some(_) => Err(RestoreError::DataDirNotEmpty { dir: dir.to_path_buf() }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(RestoreError::DataDir { dir: dir.to_path_buf(), source }),
    }
}

/// Takes back what a failed restore wrote: the directory if it made it, else its contents.
fn undo(dir: &Path, existed: bool) {
    let result = if existed {
        std::fs::read_dir(dir).and_then(|entries| {
            entries.flatten().try_for_each(|entry| {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(path)
                } else {
                    std::fs::remove_file(path)
                }
            })
        })
    } else {
        std::fs::remove_dir_all(dir)
    };
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a partly restored store; remove it by hand");
    }
}

/// What `orgplane restore` prints on success: what was restored and how to start the node.
pub fn describe(config: &RestoreConfig, restored: &Restored) -> String {
    let header = &restored.header;
    let start = match &config.cluster {
        Some(cluster) => {
            let peers = cluster.peers.iter().map(|(id, addr)| format!("{id}={addr}")).collect::<Vec<_>>().join(",");
            format!(
                "start it with: orgplane node --region {region} --node-id {node} --data-dir {dir} --peers {peers}\n\
                 restore every other node of --peers from the same file with the same --peers before starting them\n",
                region = header.region,
                node = cluster.node_id,
                dir = config.data_dir.display(),
            )
        }
        None => format!(
            "start it with: orgplane node --region {region} --node-id N --data-dir {dir} --peers 1=HOST:PORT,...\n\
             (its first start makes --peers the new cluster's voters; restore every other node of --peers from the\n\
             same file before starting them, or start this one alone and add the others with orgctl cluster add-node)\n",
            region = header.region,
            dir = config.data_dir.display(),
        ),
    };
    format!(
        "restored region {region} at log index {index} (term {term} in the original cluster) into {dir}\n\
         backup taken by node {from} at {taken} (ms since the Unix epoch); {keys} records; checksums verified\n\
         {start}",
        region = header.region,
        index = header.log_index,
        term = header.log_term,
        dir = config.data_dir.display(),
        taken = header.created_at_ms,
        from = header.node_id,
        keys = restored.seeded.model_keys,
    )
}
