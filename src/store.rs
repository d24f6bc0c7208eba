//! Durable state: atomic writes (temp file → fsync → rename → fsync of the folder), schema
//! versions in every file, append-only journals, and quarantine of unreadable files. Copies
//! that recovery rebuilds from the journal (the TSVs) are written without waiting for the
//! disk ([`write_replace`], [`append_plain`]), and a hint recovery can do without (the
//! experiment under way) in place ([`overwrite_in_place`]): on a real disk each fsync costs
//! milliseconds, and each new file an inode.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of the state files this binary writes. A newer one is refused, not misread.
pub const SCHEMA_VERSION: u32 = 1;

/// Write `bytes` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    through_temp(path, bytes, true)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// `bytes` over the start of `path` (created if missing), without fsync: a kill of the
/// daemon loses nothing (the page cache stays), a power loss may leave the old bytes or a
/// mix. For writes of one length, read by nothing but a note of recovery's.
pub fn overwrite_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?
        .write_all_at(bytes, 0)
}

/// Replace `path` by a temp file and a rename, without fsync: readers see the old content or
/// the new, never a mix; after a crash the file may be older (or, on a file system that does
/// not order the rename after the data, empty). Only for files recovery rebuilds.
pub fn write_replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    through_temp(path, bytes, false)
}

/// `bytes` into a temp file beside `path` (fsynced when `durable`), renamed over `path`.
fn through_temp(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    schema: u32,
    #[serde(flatten)]
    body: T,
}

/// Save a value as pretty JSON with the schema version, atomically.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, &versioned(value)?).with_context(|| format!("writing {}", path.display()))
}

fn versioned<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec_pretty(&Versioned {
        schema: SCHEMA_VERSION,
        body: value,
    })?)
}

/// A state file written by a newer arctl: refused, and left as it is for that version.
#[derive(Debug, thiserror::Error)]
#[error("{path} has schema version {found}, newer than this arctl understands ({SCHEMA_VERSION}): upgrade arctl")]
pub struct SchemaTooNew {
    pub path: String,
    pub found: u32,
}

/// Load a value saved by `save_json`, refusing a schema newer than this binary's
/// (the error downcasts to [`SchemaTooNew`]).
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let schema = raw.get("schema").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    if schema > SCHEMA_VERSION {
        return Err(SchemaTooNew {
            path: path.display().to_string(),
            found: schema,
        }
        .into());
    }
    if schema == 0 {
        bail!("{} has no schema version", path.display());
    }
    let v: Versioned<T> = serde_json::from_value(raw)
        .with_context(|| format!("{} does not match schema {schema}", path.display()))?;
    Ok(v.body)
}

/// Append one JSON object as a line and fsync, so a recorded line survives a crash.
pub fn append_json_line<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    append_durable(path, &line)
}

/// Append bytes and fsync.
pub fn append_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    append_marked(path, bytes).map(|_| ())
}

/// Append bytes and fdatasync; what the file looks like right after (see [`FileMark`]).
pub fn append_marked(path: &Path, bytes: &[u8]) -> Result<FileMark> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_data())
        .and_then(|_| f.metadata())
        .map(|m| FileMark::from(&m))
        .with_context(|| format!("appending to {}", path.display()))
}

/// Append bytes without fsync (a copy recovery rebuilds).
pub fn append_plain(path: &Path, bytes: &[u8]) -> Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("appending to {}", path.display()))
}

/// A file as arctl last wrote it: any later write by anyone changes its size or its change
/// time (ctime, which the kernel sets and no one can set back), so a file whose mark is
/// unchanged need not be read to know it holds only what arctl wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMark {
    dev: u64,
    ino: u64,
    len: u64,
    ctime: (i64, i64),
}

impl FileMark {
    /// The mark of `path` now (None: not there).
    pub fn of(path: &Path) -> Option<FileMark> {
        fs::metadata(path).ok().map(|m| FileMark::from(&m))
    }
}

impl From<&fs::Metadata> for FileMark {
    fn from(m: &fs::Metadata) -> FileMark {
        use std::os::unix::fs::MetadataExt;
        FileMark {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Read a JSON-lines file. A torn last line (crash mid-append) is dropped and reported; a
/// bad line elsewhere is skipped (see [`read_json_lines_checked`] to learn which).
pub fn read_json_lines<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, bool)> {
    let r = read_json_lines_checked(path)?;
    Ok((r.values, r.torn))
}

/// A JSON-lines file as read: its good values, whether the last line was torn, and the
/// lines that did not parse (1-based number, text, why).
pub struct JsonLines<T> {
    pub values: Vec<T>,
    pub torn: bool,
    pub bad: Vec<(usize, String, String)>,
}

/// Read a JSON-lines file, keeping the lines that parse.
pub fn read_json_lines_checked<T: DeserializeOwned>(path: &Path) -> Result<JsonLines<T>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(JsonLines {
                values: Vec::new(),
                torn: false,
                bad: Vec::new(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            // Not UTF-8: read it lossily, the bad bytes make their lines unreadable.
            let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut out = JsonLines {
        values: Vec::with_capacity(lines.len()),
        torn: false,
        bad: Vec::new(),
    };
    for (i, (n, line)) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.values.push(v),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => out.torn = true,
            Err(e) => out.bad.push((n + 1, line.to_string(), e.to_string())),
        }
    }
    Ok(out)
}

/// Where the lines taken out of `path` go: `<path>.quarantine`, appended to.
pub fn quarantine_path(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        "{}.quarantine",
        path.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Append `lines` to the quarantine file of `path` (durably), each on its own line.
pub fn quarantine_lines(path: &Path, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for l in lines {
        text.push_str(l.trim_end_matches('\n'));
        text.push('\n');
    }
    append_durable(&quarantine_path(path), text.as_bytes())
}

/// The lines of `have` that are not lines of `expected` (each expected line matches once).
pub fn foreign_lines(have: &[u8], expected: &[u8]) -> Vec<String> {
    let mut want: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for l in expected.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        *want.entry(l).or_default() += 1;
    }
    let mut out = Vec::new();
    for l in have.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match want.get_mut(l) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(String::from_utf8_lossy(l).into_owned()),
        }
    }
    out
}

/// Move an unreadable file aside (never delete it); returns the new path.
pub fn quarantine(path: &Path) -> io::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let aside = path.with_file_name(format!(
        "{}.corrupt-{stamp}",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    fs::rename(path, &aside)?;
    Ok(aside)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The text of at most the last `max` bytes of a file, read from its end only; a first line
/// cut by that window is dropped.
pub fn read_tail(path: &Path, max: u64) -> io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(match text.split_once('\n') {
        Some((_, rest)) if start > 0 => rest.to_string(),
        _ => text.into_owned(),
    })
}

/// The last `n` non-empty lines of a file (from its last 16 KiB), joined with " | ".
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = read_tail(path, 16 * 1024).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct S {
        a: u32,
    }

    #[test]
    fn json_round_trip_and_newer_schema_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        save_json(&p, &S { a: 7 }).unwrap();
        assert_eq!(load_json::<S>(&p).unwrap(), S { a: 7 });
        fs::write(&p, r#"{"schema": 99, "a": 1}"#).unwrap();
        let e = load_json::<S>(&p).unwrap_err().to_string();
        assert!(e.contains("newer than this arctl"), "{e}");
    }

    #[test]
    fn a_mark_changes_with_any_write_and_replace_is_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.jsonl");
        let m = append_marked(&p, b"{\"a\": 1}\n").unwrap();
        assert_eq!(FileMark::of(&p), Some(m));
        append_plain(&p, b"x\n").unwrap();
        assert_ne!(FileMark::of(&p), Some(m), "an append changes the mark");
        let m = FileMark::of(&p).unwrap();
        // Same length, other bytes: the change time moves (wait past the timestamp tick).
        let before = fs::metadata(&p).unwrap().modified().unwrap();
        while fs::metadata(&p).unwrap().modified().unwrap() == before {
            fs::write(&p, b"{\"a\": 2}\ny\n").unwrap();
        }
        assert_ne!(
            FileMark::of(&p),
            Some(m),
            "an edit in place changes the mark"
        );
        write_replace(&p, b"whole\n").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"whole\n");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn torn_last_line_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.jsonl");
        append_json_line(&p, &S { a: 1 }).unwrap();
        append_durable(&p, b"{\"a\": 2").unwrap();
        let (v, torn): (Vec<S>, bool) = read_json_lines(&p).unwrap();
        assert_eq!(v, vec![S { a: 1 }]);
        assert!(torn);
    }

    #[test]
    fn a_bad_line_is_skipped_alone_and_foreign_lines_are_found() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.jsonl");
        append_json_line(&p, &S { a: 1 }).unwrap();
        append_durable(&p, b"{\"injected\": true, garbage\n").unwrap();
        append_json_line(&p, &S { a: 2 }).unwrap();
        let r: JsonLines<S> = read_json_lines_checked(&p).unwrap();
        assert_eq!(r.values, vec![S { a: 1 }, S { a: 2 }]);
        assert_eq!(r.bad.len(), 1);
        assert_eq!(r.bad[0].0, 2);
        let f = foreign_lines(b"a\nx\nb\na\n", b"a\nb\n");
        assert_eq!(f, vec!["x".to_string(), "a".to_string()]);
        quarantine_lines(&p, &f).unwrap();
        assert_eq!(fs::read_to_string(quarantine_path(&p)).unwrap(), "x\na\n");
    }
}
