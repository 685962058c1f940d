//! The flows being served, by id and version, and their hot reload.
//!
//! Invariants: a call runs the flow version it started on until it ends (old versions stay
//! while calls use them; the newest 16 per flow are kept); a flow that does not check clean,
//! or uses node kinds this build cannot run, is never installed (the old version keeps
//! serving and the reason is logged).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use resetline_engine::Engine;
use resetline_flow::{Catalogs, Flow, SourceMap};

/// Versions kept per flow for calls in progress.
const KEEP_VERSIONS: usize = 16;

/// A flow version with the catalogs it was checked against.
#[derive(Debug)]
pub struct Loaded {
    /// The checked flow.
    pub flow: Flow,
    /// Its prompt catalogs.
    pub catalogs: Arc<Catalogs>,
    /// Load order, to prune the oldest versions.
    seq: u64,
}

#[derive(Debug, Default)]
struct Slot {
    current: Option<Arc<Loaded>>,
    versions: HashMap<String, Arc<Loaded>>,
}

/// What a reload did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new version is now current.
    Installed {
        /// Flow id.
        flow: String,
        /// Version key.
        version: String,
    },
    /// Same version as current.
    Unchanged,
    /// Refused; the old version (if any) keeps serving.
    Refused {
        /// The file.
        file: String,
        /// Why (rendered diagnostics or unsupported nodes).
        reason: String,
    },
}

/// All served flows.
#[derive(Debug, Default)]
pub struct Registry {
    slots: RwLock<HashMap<String, Slot>>,
    seq: std::sync::atomic::AtomicU64,
}

impl Registry {
    /// The current version of `id`.
    pub fn current(&self, id: &str) -> Option<Arc<Loaded>> {
        self.slots.read().ok()?.get(id)?.current.clone()
    }

    /// Version `version` of `id`, if still kept.
    pub fn version(&self, id: &str, version: &str) -> Option<Arc<Loaded>> {
        self.slots
            .read()
            .ok()?
            .get(id)?
            .versions
            .get(version)
            .cloned()
    }

    /// Flow ids with their current version.
    pub fn list(&self) -> BTreeMap<String, String> {
        self.slots
            .read()
            .map(|s| {
                s.iter()
                    .filter_map(|(id, slot)| {
                        slot.current
                            .as_ref()
                            .map(|c| (id.clone(), c.flow.version_key()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Installs `flow` as the current version of its id.
    pub fn install(&self, flow: Flow, catalogs: Arc<Catalogs>) -> ReloadResult {
        let id = flow.id.value.clone();
        let version = flow.version_key();
        let Ok(mut slots) = self.slots.write() else {
            return ReloadResult::Unchanged;
        };
        let slot = slots.entry(id.clone()).or_default();
        if slot
            .current
            .as_ref()
            .is_some_and(|c| c.flow.version_key() == version)
        {
            return ReloadResult::Unchanged;
        }
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let loaded = Arc::new(Loaded {
            flow,
            catalogs,
            seq,
        });
        slot.versions.insert(version.clone(), loaded.clone());
        slot.current = Some(loaded);
        while slot.versions.len() > KEEP_VERSIONS {
            let oldest = slot
                .versions
                .iter()
                .min_by_key(|(_, l)| l.seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => slot.versions.remove(&k),
                None => break,
            };
        }
        ReloadResult::Installed { flow: id, version }
    }

    /// Loads (or reloads) every flow file in `flows_dir` against the catalogs in
    /// `prompts_dir`.
    pub fn load_dir(&self, flows_dir: &Path, prompts_dir: &Path) -> Vec<ReloadResult> {
        let mut sources = SourceMap::new();
        let (catalogs, catalog_problems) = Catalogs::load_dir(prompts_dir, &mut sources);
        let catalogs = Arc::new(catalogs);
        let mut results = Vec::new();
        // Warnings (a missing recording, W040) load: the engine speaks the text instead.
        let (catalog_errors, catalog_warnings): (Vec<_>, Vec<_>) = catalog_problems
            .into_iter()
            .partition(|d| d.severity() == resetline_flow::Severity::Error);
        for d in &catalog_warnings {
            tracing::warn!(code = %d.code, file = %d.file, line = d.span.start.line, column = d.span.start.col, message = %d.message, "prompt catalog warning");
        }
        if !catalog_errors.is_empty() {
            let reason: String = catalog_errors.iter().map(|d| d.render(&sources)).collect();
            results.push(ReloadResult::Refused {
                file: prompts_dir.display().to_string(),
                reason,
            });
            return results;
        }
        for file in flow_files(flows_dir) {
            let name = file.display().to_string();
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    results.push(ReloadResult::Refused {
                        file: name,
                        reason: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            sources.add(&name, &text);
            let compiled = resetline_flow::compile(&name, &text, Some(&catalogs));
            let flow = match compiled.flow {
                Some(flow)
                    if compiled
                        .diagnostics
                        .iter()
                        .all(|d| d.severity() != resetline_flow::Severity::Error) =>
                {
                    flow
                }
                _ => {
                    let reason: String = compiled
                        .diagnostics
                        .iter()
                        .map(|d| d.render(&sources))
                        .collect();
                    results.push(ReloadResult::Refused { file: name, reason });
                    continue;
                }
            };
            let unsupported = Engine::unsupported(&flow);
            if !unsupported.is_empty() {
                results.push(ReloadResult::Refused {
                    file: name,
                    reason: format!(
                        "this build cannot run node kinds used by: {}",
                        unsupported.join(", ")
                    ),
                });
                continue;
            }
            results.push(self.install(flow, catalogs.clone()));
        }
        results
    }
}

/// A cheap fingerprint of the flow and prompt files (names, sizes, modification times), to
/// notice changes when polling.
pub fn fingerprint(dirs: &[&Path]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for dir in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries {
            p.hash(&mut h);
            if let Ok(m) = std::fs::metadata(&p) {
                m.len().hash(&mut h);
                m.modified().ok().hash(&mut h);
            }
        }
    }
    h.finish()
}

fn flow_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    (name.ends_with(".yaml") || name.ends_with(".yml"))
                        && !name.ends_with(".test.yaml")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
